import { kserve } from '@maas/proto';
import { InvalidArgumentError } from '@maas/rpc';
import { packBytesElements } from './kserve-v2-codec';

/**
 * The Open Inference Protocol's REST tensors: JSON `data` arrays, and the
 * binary-data extension, where a JSON header of `Inference-Header-Content-Length`
 * bytes is followed by raw tensor bytes. Both come in as the gRPC message the
 * rest of the gateway takes, every input as raw bytes, so the REST and gRPC
 * sides check and answer a tensor the same way.
 */

/** Header giving the JSON part's length in a binary-data body (request or answer). */
export const HEADER_LENGTH = 'inference-header-content-length';

/** Parameters this layer honours; they never reach the model. */
const BINARY_SIZE = 'binary_data_size';
const BINARY_OUTPUT = 'binary_data_output';
const BINARY = 'binary_data';

/** A request parsed from its REST form. */
export interface RestInferRequest {
  request: kserve.ModelInferRequest;
  /** Whether the named output is to be answered as binary data. */
  binaryOutput(name: string): boolean;
}

/** Marks an integer literal too long for a double, kept exact as a string by {@link parseJson}. */
const BIG = '\u0000int:';

/**
 * JSON.parse, except that integer literals of 16 or more digits come back as
 * marked strings so INT64 and UINT64 elements keep every digit (a double holds
 * integers exactly only up to 2^53).
 */
export function parseJson(text: string, what: string): unknown {
  const source = /\d{16}/.test(text) ? quoteLongIntegers(text) : text;
  try {
    return JSON.parse(source);
  } catch (err) {
    throw new InvalidArgumentError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Rewrites long integer literals outside strings as marked strings. */
function quoteLongIntegers(text: string): string {
  let out = '';
  let from = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) {
      inString = true;
      continue;
    }
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) continue;
    let end = i + 1;
    while (end < text.length && /[0-9.eE+-]/.test(text[end])) end++;
    const token = text.slice(i, end);
    if (/^-?\d{16,}$/.test(token)) {
      out += `${text.slice(from, i)}"\\u0000int:${token}"`;
      from = end;
    }
    i = end - 1;
  }
  return out + text.slice(from);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (typeof value === 'string') return value.startsWith(BIG) ? value.slice(BIG.length) : JSON.stringify(value);
  if (Array.isArray(value)) return 'an array';
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : String(value);
}

/** A JSON parameter as the protocol's message (only its name matters to a refusal; its value is kept). */
function toParameter(where: string, name: string, value: unknown): kserve.InferParameter {
  if (typeof value === 'boolean') return { parameterChoice: { $case: 'boolParam', value } };
  if (typeof value === 'string' && value.startsWith(BIG)) return { parameterChoice: { $case: 'int64Param', value: BigInt(value.slice(BIG.length)) } };
  if (typeof value === 'string') return { parameterChoice: { $case: 'stringParam', value } };
  if (typeof value === 'number' && Number.isSafeInteger(value)) return { parameterChoice: { $case: 'int64Param', value: BigInt(value) } };
  if (typeof value === 'number') return { parameterChoice: { $case: 'doubleParam', value } };
  throw new InvalidArgumentError(`${where}: parameter "${name}" is ${describe(value)}: expected a boolean, number or string`);
}

/**
 * Splits a `parameters` object into the ones this layer takes (by name) and
 * the rest, converted for the protocol's own check (which refuses them).
 */
function splitParameters(where: string, value: unknown, taken: readonly string[]): { ours: Record<string, unknown>; rest: Record<string, kserve.InferParameter> } {
  if (value === undefined) return { ours: {}, rest: {} };
  if (!isObject(value)) throw new InvalidArgumentError(`${where}: "parameters" is ${describe(value)}: expected an object`);
  const ours: Record<string, unknown> = {};
  const rest: Record<string, kserve.InferParameter> = {};
  for (const [name, v] of Object.entries(value)) {
    if (taken.includes(name)) ours[name] = v;
    else rest[name] = toParameter(where, name, v);
  }
  return { ours, rest };
}

function booleanParameter(where: string, name: string, value: unknown): boolean | undefined {
  if (value === undefined || typeof value === 'boolean') return value;
  throw new InvalidArgumentError(`${where}: parameter "${name}" is ${describe(value)}: expected true or false`);
}

function text(where: string, field: string, value: unknown): string {
  if (typeof value !== 'string' || value === '') throw new InvalidArgumentError(`${where}: "${field}" is ${value === undefined ? 'missing' : describe(value)}: expected a non-empty string`);
  return value;
}

function shapeOf(where: string, value: unknown): number[] {
  if (!Array.isArray(value) || !value.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
    throw new InvalidArgumentError(`${where}: "shape" is ${value === undefined ? 'missing' : JSON.stringify(value)}: expected an array of non-negative integers`);
  }
  return value as number[];
}

interface IntRange {
  size: number;
  min: bigint;
  max: bigint;
  write(buf: Buffer, value: bigint, offset: number): void;
}

const INTS: Record<string, IntRange> = {
  INT8: { size: 1, min: -128n, max: 127n, write: (b, v, o) => b.writeInt8(Number(v), o) },
  INT16: { size: 2, min: -32768n, max: 32767n, write: (b, v, o) => b.writeInt16LE(Number(v), o) },
  INT32: { size: 4, min: -(2n ** 31n), max: 2n ** 31n - 1n, write: (b, v, o) => b.writeInt32LE(Number(v), o) },
  INT64: { size: 8, min: -(2n ** 63n), max: 2n ** 63n - 1n, write: (b, v, o) => b.writeBigInt64LE(v, o) },
  UINT8: { size: 1, min: 0n, max: 255n, write: (b, v, o) => b.writeUInt8(Number(v), o) },
  UINT16: { size: 2, min: 0n, max: 65535n, write: (b, v, o) => b.writeUInt16LE(Number(v), o) },
  UINT32: { size: 4, min: 0n, max: 2n ** 32n - 1n, write: (b, v, o) => b.writeUInt32LE(Number(v), o) },
  UINT64: { size: 8, min: 0n, max: 2n ** 64n - 1n, write: (b, v, o) => b.writeBigUInt64LE(v, o) },
};

/** JSON `data` of one input as the raw bytes the protocol's binary form carries. */
function packJsonData(name: string, datatype: string, shape: number[], data: unknown): Buffer {
  const where = `input "${name}"`;
  if (!Array.isArray(data)) throw new InvalidArgumentError(`${where}: "data" is ${data === undefined ? 'missing' : describe(data)}: expected an array of elements (nested or flat, row-major)`);
  const values: unknown[] = data.flat(Infinity);
  const count = shape.reduce((n, d) => n * d, 1);
  if (values.length !== count) {
    throw new InvalidArgumentError(`${where}: "data" holds ${values.length} elements, expected ${count} for shape [${shape.join(',')}]`);
  }
  const bad = (i: number, expected: string): never => {
    throw new InvalidArgumentError(`${where}: element ${i} is ${describe(values[i])}: expected ${expected} for datatype ${datatype}`);
  };
  const ints = INTS[datatype];
  if (ints) {
    const buf = Buffer.allocUnsafe(count * ints.size);
    values.forEach((v, i) => {
      let n: bigint | undefined;
      if (typeof v === 'number' && Number.isSafeInteger(v)) n = BigInt(v);
      else if (typeof v === 'string' && v.startsWith(BIG)) n = BigInt(v.slice(BIG.length));
      if (n === undefined || n < ints.min || n > ints.max) bad(i, `an integer in [${ints.min}, ${ints.max}]`);
      ints.write(buf, n!, i * ints.size);
    });
    return buf;
  }
  const number = (v: unknown, i: number): number => {
    if (typeof v === 'number') return v;
    if (typeof v === 'string' && v.startsWith(BIG)) return Number(v.slice(BIG.length));
    return bad(i, 'a number');
  };
  switch (datatype) {
    case 'BOOL':
      return Buffer.from(values.map((v, i) => (typeof v === 'boolean' ? Number(v) : bad(i, 'true or false'))));
    case 'FP32': {
      const buf = Buffer.allocUnsafe(count * 4);
      values.forEach((v, i) => buf.writeFloatLE(number(v, i), i * 4));
      return buf;
    }
    case 'FP64': {
      const buf = Buffer.allocUnsafe(count * 8);
      values.forEach((v, i) => buf.writeDoubleLE(number(v, i), i * 8));
      return buf;
    }
    case 'BYTES':
      return packBytesElements(values.map((v, i) => (typeof v !== 'string' || v.startsWith(BIG) ? bad(i, 'a string') : v)));
    case 'FP16':
      throw new InvalidArgumentError(`${where}: FP16 elements have no JSON form here: send them as binary data ("parameters": {"binary_data_size": n})`);
    default:
      // An unknown datatype passes as bytes nobody reads: the protocol's check names the supported ones.
      return Buffer.alloc(0);
  }
}

/**
 * Parses a REST infer body: JSON, or with `headerLength` the binary-data
 * form. Inputs with `binary_data_size` take their bytes from the binary part
 * in order; every byte of it must be taken.
 */
export function parseInferRequest(model: string, version: string, body: Buffer, headerLength: number | undefined): RestInferRequest {
  if (headerLength !== undefined && headerLength > body.length) {
    throw new InvalidArgumentError(`Inference-Header-Content-Length is ${headerLength} but the body holds ${body.length} bytes`);
  }
  const headerEnd = headerLength ?? body.length;
  const json = parseJson(body.subarray(0, headerEnd).toString('utf8'), headerLength === undefined ? 'the request body' : `the first ${headerLength} bytes (Inference-Header-Content-Length)`);
  if (!isObject(json)) throw new InvalidArgumentError(`the request is ${describe(json)}: expected an object with "inputs"`);
  const binary = body.subarray(headerEnd);
  let offset = 0;
  const request = splitParameters('the request', json.parameters, [BINARY_OUTPUT]);
  const binaryDefault = booleanParameter('the request', BINARY_OUTPUT, request.ours[BINARY_OUTPUT]) ?? false;
  if (json.id !== undefined && typeof json.id !== 'string') throw new InvalidArgumentError(`"id" is ${describe(json.id)}: expected a string`);
  if (!Array.isArray(json.inputs) || json.inputs.length === 0) {
    throw new InvalidArgumentError(`"inputs" is ${json.inputs === undefined ? 'missing' : describe(json.inputs)}: expected a non-empty array of {name, shape, datatype, data}`);
  }
  const inputs: kserve.ModelInferRequest_InferInputTensor[] = [];
  const raw: Buffer[] = [];
  json.inputs.forEach((input: unknown, i: number) => {
    if (!isObject(input)) throw new InvalidArgumentError(`inputs[${i}] is ${describe(input)}: expected an object {name, shape, datatype, data}`);
    const name = text(`inputs[${i}]`, 'name', input.name);
    const where = `input "${name}"`;
    const datatype = text(where, 'datatype', input.datatype);
    const shape = shapeOf(where, input.shape);
    const params = splitParameters(where, input.parameters, [BINARY_SIZE]);
    const size = params.ours[BINARY_SIZE];
    if (size === undefined) {
      raw.push(packJsonData(name, datatype, shape, input.data));
    } else {
      if (!Number.isSafeInteger(size) || (size as number) < 0) throw new InvalidArgumentError(`${where}: "binary_data_size" is ${describe(size)}: expected a byte count`);
      if (input.data !== undefined) throw new InvalidArgumentError(`${where}: has both "data" and "binary_data_size": send it one way`);
      if (offset + (size as number) > binary.length) {
        throw new InvalidArgumentError(`${where}: binary_data_size ${size} runs past the binary data (${binary.length - offset} bytes left after the inputs before it)`);
      }
      raw.push(binary.subarray(offset, offset + (size as number)));
      offset += size as number;
    }
    inputs.push({ name, datatype, shape: shape.map(BigInt), parameters: params.rest, contents: undefined });
  });
  if (offset !== binary.length) {
    throw new InvalidArgumentError(`the body holds ${binary.length - offset} bytes of binary data that no input's binary_data_size claims`);
  }
  const binaryOutputs = new Map<string, boolean>();
  const outputs: kserve.ModelInferRequest_InferRequestedOutputTensor[] = [];
  if (json.outputs !== undefined) {
    if (!Array.isArray(json.outputs)) throw new InvalidArgumentError(`"outputs" is ${describe(json.outputs)}: expected an array of {name, parameters}`);
    json.outputs.forEach((output: unknown, i: number) => {
      if (!isObject(output)) throw new InvalidArgumentError(`outputs[${i}] is ${describe(output)}: expected an object {name}`);
      const name = text(`outputs[${i}]`, 'name', output.name);
      const params = splitParameters(`output "${name}"`, output.parameters, [BINARY]);
      const asBinary = booleanParameter(`output "${name}"`, BINARY, params.ours[BINARY]);
      if (asBinary !== undefined) binaryOutputs.set(name, asBinary);
      outputs.push({ name, parameters: params.rest });
    });
  }
  return {
    request: {
      modelName: model,
      modelVersion: version,
      id: (json.id as string | undefined) ?? '',
      parameters: request.rest,
      inputs,
      outputs,
      rawInputContents: raw,
    },
    binaryOutput: (name) => binaryOutputs.get(name) ?? binaryDefault,
  };
}

/** Decodes an FP16 bit pattern to the number it stands for (exact: every half is a double). */
function halfToNumber(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** One output's raw bytes as the text of a JSON `data` array. */
function jsonDataText(name: string, datatype: string, raw: Buffer): string {
  const parts: string[] = [];
  const finite = (n: number) => {
    if (!Number.isFinite(n)) {
      throw new InvalidArgumentError(`output "${name}" holds ${n}, which JSON cannot carry: ask for it as binary data ("parameters": {"binary_data": true})`);
    }
    return String(n);
  };
  const each = (size: number, read: (offset: number) => string) => {
    for (let o = 0; o + size <= raw.length; o += size) parts.push(read(o));
  };
  switch (datatype) {
    case 'BOOL':
      each(1, (o) => (raw[o] ? 'true' : 'false'));
      break;
    case 'INT8':
      each(1, (o) => String(raw.readInt8(o)));
      break;
    case 'INT16':
      each(2, (o) => String(raw.readInt16LE(o)));
      break;
    case 'INT32':
      each(4, (o) => String(raw.readInt32LE(o)));
      break;
    case 'INT64':
      each(8, (o) => raw.readBigInt64LE(o).toString());
      break;
    case 'UINT8':
      each(1, (o) => String(raw[o]));
      break;
    case 'UINT16':
      each(2, (o) => String(raw.readUInt16LE(o)));
      break;
    case 'UINT32':
      each(4, (o) => String(raw.readUInt32LE(o)));
      break;
    case 'UINT64':
      each(8, (o) => raw.readBigUInt64LE(o).toString());
      break;
    case 'FP16':
      each(2, (o) => finite(halfToNumber(raw.readUInt16LE(o))));
      break;
    case 'FP32':
      each(4, (o) => finite(raw.readFloatLE(o)));
      break;
    case 'FP64':
      each(8, (o) => finite(raw.readDoubleLE(o)));
      break;
    case 'BYTES':
      for (let o = 0; o + 4 <= raw.length; ) {
        const length = raw.readUInt32LE(o);
        parts.push(JSON.stringify(raw.toString('utf8', o + 4, o + 4 + length)));
        o += 4 + length;
      }
      break;
    default:
      throw new InvalidArgumentError(`output "${name}": datatype ${datatype} has no JSON form`);
  }
  return `[${parts.join(',')}]`;
}

/** An answer in its REST form: the JSON text, and the binary parts that follow it (none for plain JSON). */
export interface RestInferResponse {
  json: string;
  binary: Buffer[];
}

/** Encodes an inference answer, each output as JSON data or as binary data after the JSON. */
export function encodeInferResponse(response: kserve.ModelInferResponse, binaryOutput: (name: string) => boolean): RestInferResponse {
  const binary: Buffer[] = [];
  const outputs = response.outputs.map((output, i) => {
    const raw = Buffer.from(response.rawOutputContents[i] ?? new Uint8Array(0));
    const head = `"name":${JSON.stringify(output.name)},"datatype":${JSON.stringify(output.datatype)},"shape":[${output.shape.join(',')}]`;
    if (binaryOutput(output.name)) {
      binary.push(raw);
      return `{${head},"parameters":{"binary_data_size":${raw.length}}}`;
    }
    return `{${head},"data":${jsonDataText(output.name, output.datatype, raw)}}`;
  });
  const id = response.id ? `,"id":${JSON.stringify(response.id)}` : '';
  return { json: `{"model_name":${JSON.stringify(response.modelName)},"model_version":${JSON.stringify(response.modelVersion)}${id},"outputs":[${outputs.join(',')}]}`, binary };
}
