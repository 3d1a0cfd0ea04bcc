import { readFileSync } from 'node:fs';
import { DataType, type Tensor, type TensorSpec } from '@maas/proto';
import { dtypeInfo, dtypeName, elementCount } from '@maas/tensor';
import { CliError } from './cli-error';

type Nested = number | boolean | string | Nested[];

/** Parses `name=[...]` or `name=@file.json` into a name and a JSON value. */
export function parseInputArg(arg: string): { name: string; value: Nested } {
  const eq = arg.indexOf('=');
  if (eq <= 0) throw new CliError(`--input ${JSON.stringify(arg)}: expected name=[...] or name=@file.json`);
  const name = arg.slice(0, eq);
  const text = arg.slice(eq + 1);
  let json: string;
  if (text.startsWith('@')) {
    try {
      json = readFileSync(text.slice(1), 'utf8');
    } catch (err) {
      throw new CliError(`--input ${name}: cannot read ${text.slice(1)}: ${(err as Error).message}`, { cause: err });
    }
  } else {
    json = text;
  }
  try {
    return { name, value: JSON.parse(json) as Nested };
  } catch (err) {
    throw new CliError(`--input ${name}: not valid JSON (${(err as Error).message}); expected a number or nested arrays like [[1,2],[3,4]]`, { cause: err });
  }
}

/** Shape of nested arrays; ragged arrays are an error. */
export function shapeOf(value: Nested, name: string): number[] {
  if (!Array.isArray(value)) return [];
  const inner = value.map((v) => JSON.stringify(shapeOf(v, name)));
  if (new Set(inner).size > 1) throw new CliError(`--input ${name}: rows have different lengths; expected a rectangular array`);
  return [value.length, ...(value.length > 0 ? shapeOf(value[0], name) : [])];
}

function flatten(value: Nested): Array<number | boolean | string> {
  return Array.isArray(value) ? value.flatMap(flatten) : [value];
}

/** Encodes a JSON value as a wire tensor of the model's declared dtype. */
export function encodeTensor(name: string, value: Nested, spec: TensorSpec | undefined): Tensor {
  if (!spec) throw new CliError(`the model has no input "${name}"`);
  const shape = shapeOf(value, name);
  const values = flatten(value);
  const dtype = spec.dtype;
  if (dtype === DataType.DATA_TYPE_STRING) {
    return { name, dtype, shape, rawData: Buffer.alloc(0), stringData: values.map(String) };
  }
  const info = dtypeInfo(dtype);
  if (!info) throw new CliError(`input "${name}" has dtype ${dtypeName(dtype)}, which the CLI cannot encode`);
  const buf = Buffer.alloc(values.length * info.size);
  values.forEach((v, i) => {
    const o = i * info.size;
    const n = typeof v === 'boolean' ? Number(v) : Number(v);
    if (typeof v === 'string' || Number.isNaN(n)) throw new CliError(`input "${name}": element ${i} is ${JSON.stringify(v)}, expected a number`);
    switch (info.name) {
      case 'float32': return void buf.writeFloatLE(n, o);
      case 'float64': return void buf.writeDoubleLE(n, o);
      case 'int8': return void buf.writeInt8(n, o);
      case 'int16': return void buf.writeInt16LE(n, o);
      case 'int32': return void buf.writeInt32LE(n, o);
      case 'int64': return void buf.writeBigInt64LE(BigInt(Math.trunc(n)), o);
      case 'uint8': return void buf.writeUInt8(n, o);
      case 'uint16': return void buf.writeUInt16LE(n, o);
      case 'uint32': return void buf.writeUInt32LE(n, o);
      case 'uint64': return void buf.writeBigUInt64LE(BigInt(Math.trunc(n)), o);
      case 'bool': return void buf.writeUInt8(n ? 1 : 0, o);
      default: throw new CliError(`input "${name}": dtype ${info.name} cannot be written from JSON (float16 needs raw bytes)`);
    }
  });
  return { name, dtype, shape, rawData: buf, stringData: [] };
}

function nest(values: unknown[], shape: number[]): unknown {
  if (shape.length <= 1) return shape.length === 0 ? values[0] : values;
  const step = elementCount(shape.slice(1));
  return Array.from({ length: shape[0] }, (_, i) => nest(values.slice(i * step, (i + 1) * step), shape.slice(1)));
}

/** Decodes a wire tensor into `{dtype, shape, data}` with data nested by shape. */
export function decodeTensor(tensor: Tensor): { dtype: string; shape: number[]; data: unknown } {
  const name = dtypeName(tensor.dtype);
  if (tensor.dtype === DataType.DATA_TYPE_STRING) return { dtype: name, shape: tensor.shape, data: nest(tensor.stringData, tensor.shape) };
  const info = dtypeInfo(tensor.dtype)!;
  const raw = Buffer.from(tensor.rawData);
  const values: unknown[] = [];
  for (let o = 0; o + info.size <= raw.length; o += info.size) {
    switch (info.name) {
      case 'float32': values.push(raw.readFloatLE(o)); break;
      case 'float64': values.push(raw.readDoubleLE(o)); break;
      case 'int8': values.push(raw.readInt8(o)); break;
      case 'int16': values.push(raw.readInt16LE(o)); break;
      case 'int32': values.push(raw.readInt32LE(o)); break;
      case 'int64': { const v = raw.readBigInt64LE(o); values.push(Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()); break; }
      case 'uint8': values.push(raw.readUInt8(o)); break;
      case 'uint16': values.push(raw.readUInt16LE(o)); break;
      case 'uint32': values.push(raw.readUInt32LE(o)); break;
      case 'uint64': { const v = raw.readBigUInt64LE(o); values.push(Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()); break; }
      case 'bool': values.push(raw.readUInt8(o) !== 0); break;
      default: values.push(raw.readUInt16LE(o)); // float16 bits
    }
  }
  return { dtype: name, shape: tensor.shape, data: nest(values, tensor.shape) };
}
