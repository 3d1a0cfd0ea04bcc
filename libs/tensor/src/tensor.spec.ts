import fc from 'fast-check';
import { DataType, type Tensor, type TensorSpec } from '@maas/proto';
import { InvalidArgumentError } from '@maas/rpc';
import { batchKey, concatInputs, isBatchable, splitOutputs } from './tensor-batch';
import { fromOrtTensor, toOrtTensor, typedView } from './tensor-codec';
import { validateInputs, validateOutputNames } from './tensor-validation';

const f32 = (name: string, shape: number[], values?: number[]): Tensor => {
  const data = values ? new Float32Array(values) : new Float32Array(shape.reduce((a, b) => a * b, 1));
  return { name, dtype: DataType.DATA_TYPE_FLOAT32, shape, rawData: Buffer.from(data.buffer), stringData: [] };
};
const signature: TensorSpec[] = [{ name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [-1, 4], dimNames: ['batch', ''] }];

describe('validateInputs', () => {
  it('accepts a matching request', () => {
    expect(() => validateInputs([f32('input', [3, 4])], signature)).not.toThrow();
  });

  it.each([
    ['unknown name', [f32('inputs', [1, 4])], /unknown input "inputs": the model expects input: float32\[-1,4\]/],
    ['missing input', [], /missing input "input": the model expects input: float32\[-1,4\]/],
    ['duplicate input', [f32('input', [1, 4]), f32('input', [1, 4])], /given twice/],
    ['dtype mismatch', [{ ...f32('input', [1, 4]), dtype: DataType.DATA_TYPE_FLOAT64 }], /dtype mismatch; expected float32\[-1,4\], got float64\[1,4\]/],
    ['rank mismatch', [f32('input', [4])], /rank 1 instead of 2/],
    ['fixed dim mismatch', [f32('input', [1, 5])], /dimension 1 must be 4; expected float32\[-1,4\], got float32\[1,5\]/],
    ['negative dim', [{ ...f32('input', [1, 4]), shape: [-2, 4] }], /dimension 0 is -2/],
    ['empty batch', [{ ...f32('input', [1, 4]), shape: [0, 4], rawData: Buffer.alloc(0) }], /dimension 0 is 0: every dimension must be at least 1/],
    ['absurd dim', [{ ...f32('input', [1, 4]), shape: [2 ** 40, 4] }], /above the limit/],
    ['short payload', [{ ...f32('input', [2, 4]), rawData: Buffer.alloc(31) }], /raw_data has 31 bytes, expected 8 elements × 4 bytes = 32/],
    ['strings on a numeric tensor', [{ ...f32('input', [1, 4]), stringData: ['x'] }], /carry raw_data, not string_data/],
  ])('rejects %s', (_label, inputs, message) => {
    expect(() => validateInputs(inputs as Tensor[], signature)).toThrow(InvalidArgumentError);
    expect(() => validateInputs(inputs as Tensor[], signature)).toThrow(message);
  });

  it('never throws anything but INVALID_ARGUMENT on random tensors', () => {
    const tensor = fc.record({
      name: fc.constantFrom('input', 'other', ''),
      dtype: fc.integer({ min: -1, max: 20 }),
      shape: fc.array(fc.oneof(fc.integer({ min: -5, max: 10 }), fc.constant(2 ** 53), fc.double()), { maxLength: 4 }),
      rawData: fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
      stringData: fc.array(fc.string(), { maxLength: 3 }),
    });
    fc.assert(
      fc.property(fc.array(tensor, { maxLength: 3 }), (inputs) => {
        try {
          validateInputs(inputs as Tensor[], signature);
        } catch (err) {
          return err instanceof InvalidArgumentError;
        }
        return true;
      }),
      { numRuns: 2000 },
    );
  });

  it('checks requested output names', () => {
    expect(validateOutputNames([], signature)).toEqual(['input']);
    expect(() => validateOutputNames(['nope'], signature)).toThrow(/unknown output "nope"/);
  });
});

describe('batching helpers', () => {
  it('concat then split gives every request its own rows back', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 8 }), (rowCounts) => {
        let next = 0;
        const requests = rowCounts.map((rows) => [f32('input', [rows, 3], Array.from({ length: rows * 3 }, () => next++))]);
        const batch = concatInputs(requests);
        expect(batch[0].shape).toEqual([rowCounts.reduce((a, b) => a + b, 0), 3]);
        const back = splitOutputs(batch, rowCounts);
        back.forEach((outputs, i) => {
          expect(outputs[0].shape).toEqual(requests[i][0].shape);
          expect(Buffer.from(outputs[0].rawData).equals(Buffer.from(requests[i][0].rawData))).toBe(true);
        });
      }),
    );
  });

  it('keys requests by every dim but the first', () => {
    expect(batchKey([f32('input', [1, 4])])).toBe(batchKey([f32('input', [7, 4])]));
    expect(batchKey([f32('input', [1, 4])])).not.toBe(batchKey([f32('input', [1, 5])]));
  });

  it('batches only models whose inputs and outputs all have a dynamic first dim', () => {
    expect(isBatchable(signature, signature)).toBe(true);
    expect(isBatchable([{ ...signature[0], shape: [1, 4] }], signature)).toBe(false);
  });
});

describe('onnxruntime tensor conversion', () => {
  it('shares aligned bytes and copies misaligned ones', () => {
    const aligned = Buffer.from(new Float32Array([1, 2]).buffer);
    expect((typedView(DataType.DATA_TYPE_FLOAT32, aligned) as Float32Array).buffer).toBe(aligned.buffer);
    const misaligned = Buffer.alloc(9).subarray(1);
    misaligned.writeFloatLE(3.5, 0);
    expect(Array.from(typedView(DataType.DATA_TYPE_FLOAT32, misaligned) as Float32Array)).toEqual([3.5, 0]);
  });

  it('round-trips int64, bool and string tensors', () => {
    const int64: Tensor = { name: 'a', dtype: DataType.DATA_TYPE_INT64, shape: [2], rawData: Buffer.from(new BigInt64Array([-1n, 2n ** 40n]).buffer), stringData: [] };
    expect(fromOrtTensor('a', toOrtTensor(int64))).toEqual({ ...int64, rawData: expect.anything() });
    expect(Buffer.from(fromOrtTensor('a', toOrtTensor(int64)).rawData).equals(int64.rawData)).toBe(true);
    const strings: Tensor = { name: 's', dtype: DataType.DATA_TYPE_STRING, shape: [2], rawData: Buffer.alloc(0), stringData: ['x', 'yz'] };
    expect(fromOrtTensor('s', toOrtTensor(strings)).stringData).toEqual(['x', 'yz']);
    const bool: Tensor = { name: 'b', dtype: DataType.DATA_TYPE_BOOL, shape: [3], rawData: Buffer.from([1, 0, 1]), stringData: [] };
    expect(toOrtTensor(bool).type).toBe('bool');
  });
});
