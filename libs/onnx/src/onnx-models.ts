import { onnx } from 'onnx-proto';

/**
 * Small ONNX graphs the tests and the demo make themselves, so nothing is ever
 * downloaded. Every builder returns the serialized `ModelProto`.
 */

type Dim = number | string;

const OPSET = 17;
const IR_VERSION = 8;

function valueInfo(name: string, elemType: number, shape: Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function floatInitializer(name: string, dims: number[], values: Float32Array): onnx.ITensorProto {
  return {
    name,
    dims,
    dataType: onnx.TensorProto.DataType.FLOAT,
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  };
}

function encodeModel(graph: onnx.IGraphProto, producer = 'maas-testing'): Buffer {
  const model: onnx.IModelProto = {
    irVersion: IR_VERSION,
    producerName: producer,
    opsetImport: [{ domain: '', version: OPSET }],
    graph,
  };
  return Buffer.from(onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish());
}

/** Deterministic pseudo-random floats in [-1, 1) (mulberry32). */
export function seededFloats(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

/** Options of {@link mlpModel}. */
export interface MlpOptions {
  /** @default 4 */
  inputSize?: number;
  /** @default 16 */
  hiddenSize?: number;
  /** @default 3 */
  outputSize?: number;
  /** Seed of the weights, so two seeds make two different models. @default 1 */
  seed?: number;
  /** First dim of input and output: a name for a dynamic batch, or a fixed size. @default 'batch' */
  batch?: Dim;
  /** @default 'input' */
  inputName?: string;
  /** @default 'output' */
  outputName?: string;
}

/** `output = relu(input · W1 + b1) · W2 + b2`, float32, batch-dynamic by default. */
export function mlpModel(options: MlpOptions = {}): Buffer {
  const inputSize = options.inputSize ?? 4;
  const hiddenSize = options.hiddenSize ?? 16;
  const outputSize = options.outputSize ?? 3;
  const seed = options.seed ?? 1;
  const batch = options.batch ?? 'batch';
  const input = options.inputName ?? 'input';
  const output = options.outputName ?? 'output';
  return encodeModel({
    name: 'mlp',
    node: [
      { opType: 'MatMul', input: [input, 'w1'], output: ['h0'] },
      { opType: 'Add', input: ['h0', 'b1'], output: ['h1'] },
      { opType: 'Relu', input: ['h1'], output: ['h2'] },
      { opType: 'MatMul', input: ['h2', 'w2'], output: ['o0'] },
      { opType: 'Add', input: ['o0', 'b2'], output: [output] },
    ],
    initializer: [
      floatInitializer('w1', [inputSize, hiddenSize], seededFloats(inputSize * hiddenSize, seed)),
      floatInitializer('b1', [hiddenSize], seededFloats(hiddenSize, seed + 1)),
      floatInitializer('w2', [hiddenSize, outputSize], seededFloats(hiddenSize * outputSize, seed + 2)),
      floatInitializer('b2', [outputSize], seededFloats(outputSize, seed + 3)),
    ],
    input: [valueInfo(input, onnx.TensorProto.DataType.FLOAT, [batch, inputSize])],
    output: [valueInfo(output, onnx.TensorProto.DataType.FLOAT, [batch, outputSize])],
  });
}

/**
 * `y = Identity(x)` for any ONNX element type number (1 float, 7 int64, 8
 * string, 9 bool, ...), with the given shape.
 */
export function identityModel(elemType: number, shape: Dim[] = ['batch', 2]): Buffer {
  return encodeModel({
    name: 'identity',
    node: [{ opType: 'Identity', input: ['x'], output: ['y'] }],
    input: [valueInfo('x', elemType, shape)],
    output: [valueInfo('y', elemType, shape)],
  });
}

/** `sum = a + b` and `product = a * b` over float32 [batch, size]: two inputs, two outputs. */
export function twoInputModel(size = 3): Buffer {
  const F = onnx.TensorProto.DataType.FLOAT;
  return encodeModel({
    name: 'two-input',
    node: [
      { opType: 'Add', input: ['a', 'b'], output: ['sum'] },
      { opType: 'Mul', input: ['a', 'b'], output: ['product'] },
    ],
    input: [valueInfo('a', F, ['batch', size]), valueInfo('b', F, ['batch', size])],
    output: [valueInfo('sum', F, ['batch', size]), valueInfo('product', F, ['batch', size])],
  });
}

/**
 * An MLP padded with an unused float32 constant of `paddingBytes`, to make
 * artifacts of a chosen size (memory budgets, streaming uploads).
 */
export function paddedModel(paddingBytes: number, options: MlpOptions = {}): Buffer {
  const base = onnx.ModelProto.decode(mlpModel(options));
  const count = Math.max(1, Math.floor(paddingBytes / 4));
  base.graph!.initializer!.push(
    onnx.TensorProto.create(floatInitializer('padding', [count], seededFloats(count, (options.seed ?? 1) + 7))),
  );
  return Buffer.from(onnx.ModelProto.encode(base).finish());
}
