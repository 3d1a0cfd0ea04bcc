import { DataType, kserve, triton, type ModelMetadataResponse, type PredictRequest, type PredictResponse, type Tensor, type TensorSpec } from '@maas/proto';
import { InvalidArgumentError } from '@maas/rpc';
import { dtypeName, isBatchable } from '@maas/tensor';

/** Open Inference Protocol datatype names and the MaaS dtypes they carry. */
const V2_TO_DTYPE: Record<string, DataType> = {
  BOOL: DataType.DATA_TYPE_BOOL,
  UINT8: DataType.DATA_TYPE_UINT8,
  UINT16: DataType.DATA_TYPE_UINT16,
  UINT32: DataType.DATA_TYPE_UINT32,
  UINT64: DataType.DATA_TYPE_UINT64,
  INT8: DataType.DATA_TYPE_INT8,
  INT16: DataType.DATA_TYPE_INT16,
  INT32: DataType.DATA_TYPE_INT32,
  INT64: DataType.DATA_TYPE_INT64,
  FP16: DataType.DATA_TYPE_FLOAT16,
  FP32: DataType.DATA_TYPE_FLOAT32,
  FP64: DataType.DATA_TYPE_FLOAT64,
  BYTES: DataType.DATA_TYPE_STRING,
};
const DTYPE_TO_V2 = new Map(Object.entries(V2_TO_DTYPE).map(([name, dtype]) => [dtype, name]));
const V2_NAMES = Object.keys(V2_TO_DTYPE).join(', ');

/** The V2 datatype name of a MaaS dtype (`FP32` for float32). */
export function v2DatatypeOf(dtype: DataType): string {
  const name = DTYPE_TO_V2.get(dtype);
  if (!name) throw new InvalidArgumentError(`dtype ${dtypeName(dtype)} has no Open Inference Protocol datatype`);
  return name;
}

/** The MaaS dtype of a V2 datatype name; INVALID_ARGUMENT naming the supported ones otherwise. */
export function dtypeOfV2(datatype: string, tensor: string): DataType {
  const dtype = V2_TO_DTYPE[datatype];
  if (dtype === undefined) {
    throw new InvalidArgumentError(`input "${tensor}": datatype "${datatype}" is not supported; expected one of ${V2_NAMES}`);
  }
  return dtype;
}

/** Converts V2 tensor metadata from a MaaS signature entry. */
export function toTensorMetadata(spec: TensorSpec): kserve.ModelMetadataResponse_TensorMetadata {
  return { name: spec.name, datatype: v2DatatypeOf(spec.dtype), shape: spec.shape.map(BigInt) };
}

/** Parses the V2 `model_version` string: empty → 0 (server picks), else a positive integer. */
export function parseV2Version(version: string): number {
  if (version === '') return 0;
  if (!/^[1-9][0-9]{0,9}$/.test(version)) {
    throw new InvalidArgumentError(`model version "${version}" is not valid: expected a positive integer or empty`);
  }
  return Number(version);
}

/** Strict UTF-8: a malformed element is refused rather than rewritten with U+FFFD. */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * One BYTES element as the string a model's string tensor takes. onnxruntime-node
 * carries string tensors as JavaScript strings, so only valid UTF-8 passes
 * through unchanged; anything else is INVALID_ARGUMENT, never a silently
 * altered element.
 */
function bytesElement(name: string, index: number, bytes: Uint8Array): string {
  try {
    return UTF8.decode(bytes);
  } catch {
    const shown = Buffer.from(bytes.subarray(0, 16)).toString('hex');
    throw new InvalidArgumentError(
      `input "${name}": BYTES element ${index} (${bytes.length} bytes, starting ${shown}) is not valid UTF-8: string tensors reach onnxruntime as text, so only UTF-8 elements are carried; send binary data as a UINT8 tensor`,
    );
  }
}

/** Any parameter a request, an input or an output carries is refused: none is honoured yet (the README lists them). */
export function refuseParameters(where: string, parameters: Record<string, unknown> | undefined, honoured = 'this server honours no inference parameters (priority, timeout, sequences, classification, shared memory)'): void {
  const names = Object.keys(parameters ?? {});
  if (names.length > 0) {
    throw new InvalidArgumentError(`${where}: parameter${names.length > 1 ? 's' : ''} ${names.map((n) => JSON.stringify(n)).join(', ')} not supported: ${honoured}; send none`);
  }
}

/** Whether typed contents hold any element. */
function hasTypedContents(contents: kserve.InferTensorContents | undefined): boolean {
  if (!contents) return false;
  return Object.values(contents).some((values) => Array.isArray(values) && values.length > 0);
}

function elementCount(shape: number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** Packs typed V2 contents into little-endian raw bytes for the given dtype. */
function packContents(name: string, dtype: DataType, shape: number[], contents: kserve.InferTensorContents): Tensor {
  const count = elementCount(shape);
  const tensor: Tensor = { name, dtype, shape, rawData: Buffer.alloc(0), stringData: [] };
  const expectLength = (values: ArrayLike<unknown>, field: string) => {
    if (values.length !== count) {
      throw new InvalidArgumentError(
        `input "${name}": ${field} holds ${values.length} elements, expected ${count} for shape [${shape.join(',')}]`,
      );
    }
  };
  const pack = <T>(values: T[], field: string, size: number, write: (buf: Buffer, value: T, offset: number) => void) => {
    expectLength(values, field);
    const buf = Buffer.allocUnsafe(values.length * size);
    values.forEach((value, i) => write(buf, value, i * size));
    tensor.rawData = buf;
    return tensor;
  };
  switch (dtype) {
    case DataType.DATA_TYPE_BOOL:
      return pack(contents.boolContents, 'bool_contents', 1, (b, v, o) => b.writeUInt8(v ? 1 : 0, o));
    case DataType.DATA_TYPE_INT8:
      return pack(contents.intContents, 'int_contents', 1, (b, v, o) => b.writeInt8(v, o));
    case DataType.DATA_TYPE_INT16:
      return pack(contents.intContents, 'int_contents', 2, (b, v, o) => b.writeInt16LE(v, o));
    case DataType.DATA_TYPE_INT32:
      return pack(contents.intContents, 'int_contents', 4, (b, v, o) => b.writeInt32LE(v, o));
    case DataType.DATA_TYPE_INT64:
      return pack(contents.int64Contents, 'int64_contents', 8, (b, v, o) => b.writeBigInt64LE(BigInt(v), o));
    case DataType.DATA_TYPE_UINT8:
      return pack(contents.uintContents, 'uint_contents', 1, (b, v, o) => b.writeUInt8(v, o));
    case DataType.DATA_TYPE_UINT16:
      return pack(contents.uintContents, 'uint_contents', 2, (b, v, o) => b.writeUInt16LE(v, o));
    case DataType.DATA_TYPE_UINT32:
      return pack(contents.uintContents, 'uint_contents', 4, (b, v, o) => b.writeUInt32LE(v, o));
    case DataType.DATA_TYPE_UINT64:
      return pack(contents.uint64Contents, 'uint64_contents', 8, (b, v, o) => b.writeBigUInt64LE(BigInt(v), o));
    case DataType.DATA_TYPE_FLOAT32:
      return pack(contents.fp32Contents, 'fp32_contents', 4, (b, v, o) => b.writeFloatLE(v, o));
    case DataType.DATA_TYPE_FLOAT64:
      return pack(contents.fp64Contents, 'fp64_contents', 8, (b, v, o) => b.writeDoubleLE(v, o));
    case DataType.DATA_TYPE_STRING:
      expectLength(contents.bytesContents, 'bytes_contents');
      tensor.stringData = contents.bytesContents.map((b, i) => bytesElement(name, i, b));
      return tensor;
    default:
      throw new InvalidArgumentError(`input "${name}": datatype FP16 has no typed contents; send it in raw_input_contents`);
  }
}

/** Splits a V2 BYTES raw buffer (4-byte little-endian length before each element) into strings. */
function unpackBytesElements(name: string, raw: Buffer): string[] {
  const out: string[] = [];
  let offset = 0;
  while (offset < raw.length) {
    if (offset + 4 > raw.length) throw new InvalidArgumentError(`input "${name}": BYTES raw contents end inside a length prefix`);
    const length = raw.readUInt32LE(offset);
    offset += 4;
    if (offset + length > raw.length) {
      throw new InvalidArgumentError(`input "${name}": BYTES element of ${length} bytes runs past the end of raw contents`);
    }
    out.push(bytesElement(name, out.length, raw.subarray(offset, offset + length)));
    offset += length;
  }
  return out;
}

/**
 * Turns a V2 `ModelInferRequest` into a MaaS `PredictRequest`. Inputs come
 * either all from `raw_input_contents` (one byte string per input, in order)
 * or all from typed `contents`; shapes and byte lengths are checked against
 * the signature later, by the node.
 */
export function fromModelInferRequest(request: kserve.ModelInferRequest): PredictRequest {
  if (!request.modelName) throw new InvalidArgumentError('model_name is empty: expected the name of a registered model');
  const raw = request.rawInputContents;
  if (raw.length > 0 && raw.length !== request.inputs.length) {
    throw new InvalidArgumentError(
      `raw_input_contents holds ${raw.length} entries but inputs lists ${request.inputs.length}: expected one per input, in order`,
    );
  }
  refuseParameters('the request', request.parameters);
  for (const output of request.outputs) refuseParameters(`output "${output.name}"`, output.parameters);
  const inputs = request.inputs.map((input, i): Tensor => {
    refuseParameters(`input "${input.name}"`, input.parameters);
    const dtype = dtypeOfV2(input.datatype, input.name);
    if (raw.length > 0 && hasTypedContents(input.contents)) {
      throw new InvalidArgumentError(`input "${input.name}": has typed contents and the request has raw_input_contents: send every input one way, raw or typed`);
    }
    if (input.shape.some((d) => d < 0n || d > BigInt(Number.MAX_SAFE_INTEGER))) {
      throw new InvalidArgumentError(`input "${input.name}": shape [${input.shape.join(',')}] must hold non-negative integers up to 2^53`);
    }
    const shape = input.shape.map(Number);
    if (raw.length === 0) {
      if (!input.contents) throw new InvalidArgumentError(`input "${input.name}": no contents and no raw_input_contents`);
      return packContents(input.name, dtype, shape, input.contents);
    }
    const bytes = Buffer.from(raw[i]);
    if (dtype === DataType.DATA_TYPE_STRING) {
      return { name: input.name, dtype, shape, rawData: Buffer.alloc(0), stringData: unpackBytesElements(input.name, bytes) };
    }
    return { name: input.name, dtype, shape, rawData: bytes, stringData: [] };
  });
  return {
    model: request.modelName,
    version: parseV2Version(request.modelVersion),
    alias: '',
    inputs,
    outputNames: request.outputs.map((output) => output.name),
    sha256: '',
  };
}

/** BYTES elements in the protocol's raw form: a 4-byte little-endian length before each UTF-8 element. */
export function packBytesElements(elements: readonly string[]): Buffer {
  const parts = elements.flatMap((s) => {
    const body = Buffer.from(s, 'utf8');
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32LE(body.length, 0);
    return [length, body];
  });
  return Buffer.concat(parts);
}

function rawBytesOf(tensor: Tensor): Buffer {
  if (tensor.dtype !== DataType.DATA_TYPE_STRING) return Buffer.from(tensor.rawData);
  return packBytesElements(tensor.stringData);
}

/**
 * Turns a MaaS `PredictResponse` into a V2 `ModelInferResponse`. Outputs go in
 * `raw_output_contents` however the inputs came, as Triton answers: its
 * client reads only those (`InferResult.as_numpy`).
 */
export function toModelInferResponse(
  request: kserve.ModelInferRequest,
  response: PredictResponse,
): kserve.ModelInferResponse {
  return {
    modelName: response.model,
    modelVersion: String(response.version),
    id: request.id,
    parameters: {},
    outputs: response.outputs.map((output) => ({
      name: output.name,
      datatype: v2DatatypeOf(output.dtype),
      shape: output.shape.map(BigInt),
      parameters: {},
      contents: undefined,
    })),
    rawOutputContents: response.outputs.map(rawBytesOf),
  };
}

/** Triton's model-configuration data type of a MaaS dtype (TYPE_FP32 for float32). */
export function tritonDataTypeOf(dtype: DataType): triton.DataType {
  const v2 = v2DatatypeOf(dtype);
  return triton.DataType[`TYPE_${v2 === 'BYTES' ? 'STRING' : v2}` as keyof typeof triton.DataType];
}

/**
 * A version's configuration in Triton's terms. With dynamic batching on (every
 * input and output has a free first dimension and max_batch_size is above 1)
 * `max_batch_size` is the version's and dims leave out the batch dimension, as
 * Triton's do; otherwise `max_batch_size` is 0 and dims are the whole shapes.
 */
export function toModelConfig(metadata: Pick<ModelMetadataResponse, 'model' | 'inputs' | 'outputs' | 'runtime'>): triton.ModelConfig {
  const runtime = metadata.runtime;
  const batching = isBatchable(metadata.inputs, metadata.outputs) && (runtime?.maxBatchSize ?? 0) > 1;
  const dims = (spec: TensorSpec) => (batching ? spec.shape.slice(1) : spec.shape).map(BigInt);
  return {
    name: metadata.model,
    platform: 'onnxruntime_onnx',
    backend: 'onnxruntime',
    maxBatchSize: batching ? runtime!.maxBatchSize : 0,
    input: metadata.inputs.map((spec) => ({ name: spec.name, dataType: tritonDataTypeOf(spec.dtype), dims: dims(spec) })),
    output: metadata.outputs.map((spec) => ({ name: spec.name, dataType: tritonDataTypeOf(spec.dtype), dims: dims(spec) })),
    schedulingChoice: batching ? { $case: 'dynamicBatching', value: { preferredBatchSize: [], maxQueueDelayMicroseconds: BigInt(runtime?.maxQueueDelayMicros ?? 0) } } : undefined,
    instanceGroup: [{ name: `${metadata.model}_0`, count: Math.max(1, runtime?.instanceCount ?? 1), kind: triton.ModelInstanceGroup_Kind.KIND_CPU }],
  };
}
