import { open } from 'node:fs/promises';
import { onnx } from 'onnx-proto';
import { mlpModel, type MlpOptions } from './onnx-models';

function varint(value: number): Buffer {
  const bytes: number[] = [];
  let v = value;
  while (v >= 0x80) {
    bytes.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  bytes.push(v);
  return Buffer.from(bytes);
}

/** Protobuf key of a length-delimited field. */
const lengthKey = (field: number) => Buffer.from([(field << 3) | 2]);

/**
 * Writes an MLP model file padded with an unused `paddingBytes` initializer
 * of zeros, streaming it so that a GiB-sized artifact never sits in memory.
 * Returns the file size. For upload and download benchmarks and tests.
 */
export async function writePaddedModelFile(path: string, paddingBytes: number, options: MlpOptions = {}): Promise<number> {
  const model = onnx.ModelProto.decode(mlpModel(options));
  const graph = Buffer.from(onnx.GraphProto.encode(model.graph!).finish());
  model.graph = null;
  const head = Buffer.from(onnx.ModelProto.encode(model).finish());
  const count = Math.max(1, Math.floor(paddingBytes / 4));
  const data = count * 4;
  const tensorHead = Buffer.concat([
    Buffer.from(onnx.TensorProto.encode({ name: 'padding', dims: [count], dataType: onnx.TensorProto.DataType.FLOAT }).finish()),
    lengthKey(9), // raw_data
    varint(data),
  ]);
  const tensorLength = tensorHead.length + data;
  const initializer = Buffer.concat([lengthKey(5), varint(tensorLength), tensorHead]); // GraphProto.initializer
  const graphLength = graph.length + initializer.length + data;
  const file = await open(path, 'w');
  try {
    await file.write(Buffer.concat([head, lengthKey(7), varint(graphLength), graph, initializer])); // ModelProto.graph
    const zeros = Buffer.alloc(Math.min(data, 8 * 1024 * 1024));
    for (let left = data; left > 0; left -= zeros.length) await file.write(zeros, 0, Math.min(zeros.length, left));
    const { size } = await file.stat();
    return size;
  } finally {
    await file.close();
  }
}
