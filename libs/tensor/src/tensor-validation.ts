import { DataType, type Tensor, type TensorSpec } from '@maas/proto';
import { InvalidArgumentError } from '@maas/rpc';
import { dtypeInfo, dtypeName } from './dtype';
import { elementCount } from './tensor-codec';

/** Limits on one request's tensors. */
export interface TensorLimits {
  /** Largest dimension accepted. @default 2^31 - 1 */
  maxDim?: number;
  /** Largest element count of one tensor. @default 256 Mi */
  maxElements?: number;
}

/** `float32[-1,4]`. */
export function formatSpec(spec: TensorSpec): string {
  return `${dtypeName(spec.dtype)}[${spec.shape.join(',')}]`;
}

/** `input: float32[-1,4], mask: bool[-1,-1]`. */
export function formatSignature(specs: TensorSpec[]): string {
  return specs.map((s) => `${s.name}: ${formatSpec(s)}`).join(', ');
}

/**
 * Checks request tensors against a model's input signature before anything
 * reaches onnxruntime: names (unknown, missing, duplicate), dtypes, rank,
 * fixed dims, dim bounds, and payload size. Throws INVALID_ARGUMENT whose
 * message names the input and states what was expected.
 */
export function validateInputs(inputs: Tensor[], signature: TensorSpec[], limits: TensorLimits = {}): void {
  const maxDim = limits.maxDim ?? 2 ** 31 - 1;
  const maxElements = limits.maxElements ?? 256 * 1024 * 1024;
  // Messages are built only when they are thrown: a call that passes pays for no string.
  const expected = () => `the model expects ${formatSignature(signature)}`;
  const seen = new Set<string>();
  for (const tensor of inputs) {
    const spec = signature.find((s) => s.name === tensor.name);
    if (!spec) throw new InvalidArgumentError(`unknown input ${JSON.stringify(tensor.name)}: ${expected()}`);
    if (seen.has(tensor.name)) throw new InvalidArgumentError(`input "${tensor.name}" is given twice: ${expected()}`);
    seen.add(tensor.name);
    const mismatch = (why: string) =>
      new InvalidArgumentError(`input "${tensor.name}": ${why}; expected ${formatSpec(spec)}, got ${dtypeName(tensor.dtype)}[${tensor.shape.join(',')}]`);
    if (tensor.dtype !== spec.dtype) throw mismatch('dtype mismatch');
    if (tensor.shape.length !== spec.shape.length) throw mismatch(`rank ${tensor.shape.length} instead of ${spec.shape.length}`);
    for (let i = 0; i < tensor.shape.length; i++) {
      const dim = tensor.shape[i];
      if (!Number.isSafeInteger(dim) || dim < 0) throw mismatch(`dimension ${i} is ${dim}, not a positive integer`);
      // An empty tensor cannot be run: onnxruntime fails inside the graph (INTERNAL) or answers nothing useful.
      if (dim === 0) throw mismatch(`dimension ${i} is 0: every dimension must be at least 1 (empty tensors cannot be run)`);
      if (dim > maxDim) throw mismatch(`dimension ${i} is ${dim}, above the limit ${maxDim}`);
      if (spec.shape[i] >= 0 && dim !== spec.shape[i]) throw mismatch(`dimension ${i} must be ${spec.shape[i]}`);
    }
    const count = elementCount(tensor.shape);
    if (count > maxElements) throw mismatch(`${count} elements, above the limit ${maxElements}`);
    if (tensor.dtype === DataType.DATA_TYPE_STRING) {
      if (tensor.rawData.length > 0) throw mismatch('string tensors carry string_data, not raw_data');
      if (tensor.stringData.length !== count) throw mismatch(`${tensor.stringData.length} strings for ${count} elements`);
      continue;
    }
    const size = dtypeInfo(tensor.dtype)!.size;
    if (tensor.stringData.length > 0) throw mismatch('numeric tensors carry raw_data, not string_data');
    if (tensor.rawData.length !== count * size) {
      throw mismatch(`raw_data has ${tensor.rawData.length} bytes, expected ${count} elements × ${size} bytes = ${count * size}`);
    }
  }
  if (seen.size === signature.length) return;
  const missing = signature.filter((s) => !seen.has(s.name)).map((s) => s.name);
  throw new InvalidArgumentError(`missing input${missing.length > 1 ? 's' : ''} ${missing.map((m) => `"${m}"`).join(', ')}: ${expected()}`);
}

/** Checks requested output names; empty means all outputs. Returns the names to fetch. */
export function validateOutputNames(names: string[], outputs: TensorSpec[]): string[] {
  if (names.length === 0) return outputs.map((o) => o.name);
  const known = new Set(outputs.map((o) => o.name));
  for (const name of names) {
    if (!known.has(name)) throw new InvalidArgumentError(`unknown output ${JSON.stringify(name)}: the model's outputs are ${formatSignature(outputs)}`);
  }
  if (new Set(names).size !== names.length) throw new InvalidArgumentError('output_names lists a name twice');
  return names;
}
