import type { Tensor as OrtTensor } from 'onnxruntime-node';

let ortTensor: typeof OrtTensor | undefined;
/**
 * onnxruntime's Tensor class, required on first use: this library also serves
 * processes that never run a model (the CLI prints tensors as JSON), which
 * should not load onnxruntime's native binding to do so.
 */
function OrtTensorClass(): typeof OrtTensor {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  ortTensor ??= (require('onnxruntime-node') as typeof import('onnxruntime-node')).Tensor;
  return ortTensor;
}
import { DataType, type Tensor } from '@maas/proto';
import { InvalidArgumentError } from '@maas/rpc';
import { dtypeFromName, dtypeInfo, dtypeName, type OrtTypeName } from './dtype';

type TypedArrayCtor =
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | Int8ArrayConstructor
  | Int16ArrayConstructor
  | Int32ArrayConstructor
  | BigInt64ArrayConstructor
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor
  | Uint32ArrayConstructor
  | BigUint64ArrayConstructor;

const ARRAY_OF: Partial<Record<OrtTypeName, TypedArrayCtor>> = {
  float32: Float32Array,
  float64: Float64Array,
  float16: Uint16Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
  bool: Uint8Array,
};

/** Number of elements of a shape. */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * A typed-array view of little-endian raw bytes, without copying when the
 * bytes are aligned for the element size (gRPC buffers usually are not
 * guaranteed to be, so misaligned ones are copied once).
 */
export function typedView(dtype: DataType, raw: Uint8Array): ArrayBufferView {
  const info = dtypeInfo(dtype);
  const Ctor = info ? ARRAY_OF[info.name] : undefined;
  if (!info || !Ctor) throw new InvalidArgumentError(`dtype ${dtypeName(dtype)} cannot be carried as raw bytes`);
  const length = raw.byteLength / info.size;
  if (raw.byteOffset % info.size === 0) return new Ctor(raw.buffer as ArrayBuffer, raw.byteOffset, length);
  const copy = new Uint8Array(raw.byteLength);
  copy.set(raw);
  return new Ctor(copy.buffer, 0, length);
}

/** A validated wire tensor as an onnxruntime tensor (shares memory with the request where it can). */
export function toOrtTensor(tensor: Tensor): OrtTensor {
  const info = dtypeInfo(tensor.dtype);
  if (!info) throw new InvalidArgumentError(`input "${tensor.name}": dtype ${tensor.dtype} is not supported`);
  if (tensor.dtype === DataType.DATA_TYPE_STRING) return new (OrtTensorClass())('string', tensor.stringData, tensor.shape);
  const view = typedView(tensor.dtype, tensor.rawData);
  return new (OrtTensorClass())(info.name as Exclude<OrtTypeName, 'string'>, view as never, tensor.shape);
}

/** An onnxruntime output as a wire tensor; numeric data is referenced, not copied. */
export function fromOrtTensor(name: string, tensor: OrtTensor): Tensor {
  const info = dtypeFromName(tensor.type);
  if (!info) throw new Error(`output "${name}" has type ${tensor.type}, which the wire format cannot carry`);
  const shape = tensor.dims.map(Number);
  if (info.dtype === DataType.DATA_TYPE_STRING) {
    return { name, dtype: info.dtype, shape, rawData: Buffer.alloc(0), stringData: tensor.data as string[] };
  }
  const data = tensor.data as ArrayBufferView;
  return { name, dtype: info.dtype, shape, rawData: Buffer.from(data.buffer, data.byteOffset, data.byteLength), stringData: [] };
}
