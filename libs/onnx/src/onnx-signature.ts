import { open } from 'node:fs/promises';
import { DataType, type TensorSpec } from '@maas/proto';
import { InvalidArgumentError } from '@maas/rpc';
import { dtypeFromOnnx } from '@maas/tensor';
import { FileReader } from './file-reader';

/** Inputs and outputs of an ONNX model, as the registry records them. */
export interface OnnxSignature {
  irVersion: number;
  producer: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH = 2;
const WIRE_FIXED32 = 5;

/** ModelProto, GraphProto, ValueInfoProto, TypeProto, TensorShapeProto field numbers (onnx.proto). */
const MODEL_IR_VERSION = 1;
const MODEL_PRODUCER = 2;
const MODEL_GRAPH = 7;
const GRAPH_INITIALIZER = 5;
const GRAPH_INPUT = 11;
const GRAPH_OUTPUT = 12;
const TENSOR_NAME = 8;
const VALUE_NAME = 1;
const VALUE_TYPE = 2;
const TYPE_TENSOR = 1;
const TENSOR_TYPE_ELEM = 1;
const TENSOR_TYPE_SHAPE = 2;
const SHAPE_DIM = 1;
const DIM_VALUE = 1;
const DIM_PARAM = 2;

/** Longest string field read (names, dim params); anything longer is not a sane model. */
const MAX_STRING = 64 * 1024;

interface Field {
  number: number;
  wire: number;
  /** Varint value, or the length of a length-delimited field. */
  value: number;
  /** Offset of the payload of a length-delimited field. */
  start: number;
  next: number;
}

class Scanner {
  constructor(private readonly reader: FileReader) {}

  /** Calls `visit` for every field of the message spanning [start, end). */
  async fields(start: number, end: number, visit: (field: Field) => Promise<void> | void): Promise<void> {
    let offset = start;
    while (offset < end) {
      const key = await this.reader.varint(offset, end);
      const number = Math.floor(key.value / 8);
      const wire = key.value % 8;
      if (number === 0) throw new RangeError(`field number 0 at offset ${offset}`);
      let field: Field;
      switch (wire) {
        case WIRE_VARINT: {
          const v = await this.reader.varint(key.next, end);
          field = { number, wire, value: v.value, start: key.next, next: v.next };
          break;
        }
        case WIRE_FIXED64:
          field = { number, wire, value: 0, start: key.next, next: key.next + 8 };
          break;
        case WIRE_FIXED32:
          field = { number, wire, value: 0, start: key.next, next: key.next + 4 };
          break;
        case WIRE_LENGTH: {
          const len = await this.reader.varint(key.next, end);
          field = { number, wire, value: len.value, start: len.next, next: len.next + len.value };
          break;
        }
        default:
          throw new RangeError(`unsupported wire type ${wire} at offset ${offset}`);
      }
      if (field.next > end) throw new RangeError(`field ${number} at offset ${offset} runs past its message end`);
      await visit(field);
      offset = field.next;
    }
  }

  async string(field: Field): Promise<string> {
    if (field.wire !== WIRE_LENGTH) throw new RangeError(`field ${field.number} should be a string`);
    if (field.value > MAX_STRING) throw new RangeError(`string field of ${field.value} bytes is too long`);
    return (await this.reader.read(field.start, field.value)).toString('utf8');
  }
}

function signedInt64(value: number): number {
  // Varints of negative int64 values arrive as 2^64 - |v|.
  return value >= 2 ** 63 ? value - 2 ** 64 : value;
}

async function readValueInfo(scan: Scanner, field: Field, where: string): Promise<TensorSpec> {
  const spec: TensorSpec = { name: '', dtype: DataType.DATA_TYPE_UNSPECIFIED, shape: [], dimNames: [] };
  let elemType = 0;
  let tensorType = false;
  await scan.fields(field.start, field.next, async (f) => {
    if (f.number === VALUE_NAME) spec.name = await scan.string(f);
    if (f.number !== VALUE_TYPE || f.wire !== WIRE_LENGTH) return;
    await scan.fields(f.start, f.next, async (t) => {
      if (t.number !== TYPE_TENSOR || t.wire !== WIRE_LENGTH) return;
      tensorType = true;
      await scan.fields(t.start, t.next, async (tt) => {
        if (tt.number === TENSOR_TYPE_ELEM && tt.wire === WIRE_VARINT) elemType = tt.value;
        if (tt.number !== TENSOR_TYPE_SHAPE || tt.wire !== WIRE_LENGTH) return;
        await scan.fields(tt.start, tt.next, async (d) => {
          if (d.number !== SHAPE_DIM || d.wire !== WIRE_LENGTH) return;
          let size = -1;
          let param = '';
          await scan.fields(d.start, d.next, async (dv) => {
            if (dv.number === DIM_VALUE && dv.wire === WIRE_VARINT) size = signedInt64(dv.value);
            if (dv.number === DIM_PARAM) param = await scan.string(dv);
          });
          spec.shape.push(size >= 0 ? size : -1);
          spec.dimNames.push(param);
        });
      });
    });
  });
  if (!spec.name) throw new RangeError(`a graph ${where} has no name`);
  if (!tensorType) throw new InvalidArgumentError(`graph ${where} "${spec.name}" is not a tensor; MaaS serves tensor inputs and outputs only`);
  const info = dtypeFromOnnx(elemType);
  if (!info) {
    throw new InvalidArgumentError(`graph ${where} "${spec.name}" has ONNX element type ${elemType}, which onnxruntime-node cannot carry`);
  }
  spec.dtype = info.dtype;
  return spec;
}

/**
 * Reads the signature of the ONNX model in `path` by scanning its protobuf
 * wire format: only the graph's inputs, outputs and initializer names are
 * read; weights are skipped by length, so the file's size does not matter.
 * Throws {@link InvalidArgumentError} when the file is not a well-formed model.
 */
export async function readOnnxSignature(path: string): Promise<OnnxSignature> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    const scan = new Scanner(new FileReader(file, size));
    const signature: OnnxSignature = { irVersion: 0, producer: '', inputs: [], outputs: [] };
    const initializers = new Set<string>();
    let graphs = 0;
    try {
      await scan.fields(0, size, async (f) => {
        if (f.number === MODEL_IR_VERSION && f.wire === WIRE_VARINT) signature.irVersion = f.value;
        if (f.number === MODEL_PRODUCER && f.wire === WIRE_LENGTH) signature.producer = await scan.string(f);
        if (f.number !== MODEL_GRAPH || f.wire !== WIRE_LENGTH) return;
        graphs += 1;
        await scan.fields(f.start, f.next, async (g) => {
          if (g.wire !== WIRE_LENGTH) return;
          if (g.number === GRAPH_INPUT) signature.inputs.push(await readValueInfo(scan, g, 'input'));
          if (g.number === GRAPH_OUTPUT) signature.outputs.push(await readValueInfo(scan, g, 'output'));
          if (g.number === GRAPH_INITIALIZER) {
            await scan.fields(g.start, g.next, async (t) => {
              if (t.number === TENSOR_NAME) initializers.add(await scan.string(t));
            });
          }
        });
      });
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw err;
      throw new InvalidArgumentError(`not a valid ONNX model: ${(err as Error).message}; expected a serialized onnx.ModelProto`, {
        cause: err,
      });
    }
    if (signature.irVersion <= 0 || graphs !== 1) {
      throw new InvalidArgumentError('not a valid ONNX model: expected a serialized onnx.ModelProto with an ir_version and one graph');
    }
    // Before IR 4, initializers were also listed as graph inputs; they are weights, not inputs.
    signature.inputs = signature.inputs.filter((input) => !initializers.has(input.name));
    if (signature.inputs.length === 0 || signature.outputs.length === 0) {
      throw new InvalidArgumentError('ONNX model has no graph inputs or no graph outputs: expected at least one of each');
    }
    return signature;
  } finally {
    await file.close();
  }
}
