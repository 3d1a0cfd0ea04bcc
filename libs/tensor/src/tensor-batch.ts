import { DataType, type Tensor, type TensorSpec } from '@maas/proto';
import { dtypeInfo } from './dtype';
import { elementCount } from './tensor-codec';

/** Whether every input and output has a dynamic first dimension, so requests can be stacked. */
export function isBatchable(inputs: TensorSpec[], outputs: TensorSpec[]): boolean {
  const dynamicFirst = (s: TensorSpec) => s.shape.length > 0 && s.shape[0] === -1;
  return inputs.length > 0 && inputs.every(dynamicFirst) && outputs.every(dynamicFirst);
}

/** Rows (first dim) of a request; requests of one batch must agree across inputs. */
export function rowsOf(inputs: Tensor[]): number {
  return inputs.length === 0 ? 0 : inputs[0].shape[0];
}

/**
 * A key equal for requests that can share a batch: same input names, dtypes
 * and every dim but the first.
 */
export function batchKey(inputs: Tensor[]): string {
  return [...inputs]
    .sort((a, b) => (a.name < b.name ? -1 : 1))
    .map((t) => `${t.name}:${t.dtype}:${t.shape.slice(1).join('x')}`)
    .join('|');
}

/** Stacks the same-named inputs of several requests along the first dimension. */
export function concatInputs(requests: Tensor[][]): Tensor[] {
  if (requests.length === 1) return requests[0];
  const names = requests[0].map((t) => t.name);
  return names.map((name) => {
    const parts = requests.map((inputs) => inputs.find((t) => t.name === name)!);
    const first = parts[0];
    const rows = parts.reduce((n, t) => n + t.shape[0], 0);
    const shape = [rows, ...first.shape.slice(1)];
    if (first.dtype === DataType.DATA_TYPE_STRING) {
      return { name, dtype: first.dtype, shape, rawData: Buffer.alloc(0), stringData: parts.flatMap((t) => t.stringData) };
    }
    return { name, dtype: first.dtype, shape, rawData: Buffer.concat(parts.map((t) => t.rawData)), stringData: [] };
  });
}

/** Splits batch outputs back into per-request outputs by row counts (views, no copies). */
export function splitOutputs(outputs: Tensor[], rowCounts: number[]): Tensor[][] {
  if (rowCounts.length === 1) return [outputs];
  const total = rowCounts.reduce((a, b) => a + b, 0);
  const perRequest: Tensor[][] = rowCounts.map(() => []);
  for (const output of outputs) {
    if (output.shape[0] !== total) {
      throw new Error(`output "${output.name}" has ${output.shape[0]} rows for a batch of ${total}; it cannot be split per request`);
    }
    const rowElements = elementCount(output.shape.slice(1));
    const isString = output.dtype === DataType.DATA_TYPE_STRING;
    const held = isString ? output.stringData.length : output.rawData.length;
    const expected = total * rowElements * (isString ? 1 : dtypeInfo(output.dtype)!.size);
    if (held !== expected) {
      throw new Error(`output "${output.name}" holds ${held} ${isString ? 'strings' : 'bytes'} where its shape [${output.shape.join(', ')}] needs ${expected}; it cannot be split per request`);
    }
    let row = 0;
    rowCounts.forEach((rows, i) => {
      const shape = [rows, ...output.shape.slice(1)];
      if (isString) {
        perRequest[i].push({ ...output, shape, stringData: output.stringData.slice(row * rowElements, (row + rows) * rowElements) });
      } else {
        const rowBytes = rowElements * dtypeInfo(output.dtype)!.size;
        perRequest[i].push({ ...output, shape, rawData: output.rawData.subarray(row * rowBytes, (row + rows) * rowBytes) });
      }
      row += rows;
    });
  }
  return perRequest;
}
