import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataType } from '@maas/proto';
import { tempDir } from '@maas/testing';
import { decodeTensor, encodeTensor, parseInputArg, shapeOf } from './tensor-json';

const spec = (dtype: DataType) => ({ name: 'x', dtype, shape: [-1, 2], dimNames: [] });

describe('CLI tensor JSON', () => {
  it('parses inline and file inputs', () => {
    expect(parseInputArg('input=[[1,2,3,4]]')).toEqual({ name: 'input', value: [[1, 2, 3, 4]] });
    const dir = tempDir();
    writeFileSync(join(dir.path, 'x.json'), '[[5,6]]');
    expect(parseInputArg(`x=@${join(dir.path, 'x.json')}`)).toEqual({ name: 'x', value: [[5, 6]] });
    dir.remove();
    expect(() => parseInputArg('[1,2]')).toThrow(/expected name=/);
    expect(() => parseInputArg('x=[1,')).toThrow(/not valid JSON/);
    expect(() => parseInputArg('x=@/nonexistent.json')).toThrow(/cannot read/);
  });

  it('infers shapes and refuses ragged arrays', () => {
    expect(shapeOf([[1, 2, 3], [4, 5, 6]], 'x')).toEqual([2, 3]);
    expect(shapeOf(7, 'x')).toEqual([]);
    expect(() => shapeOf([[1, 2], [3]], 'x')).toThrow(/different lengths/);
  });

  it.each([DataType.DATA_TYPE_FLOAT32, DataType.DATA_TYPE_INT64, DataType.DATA_TYPE_UINT8, DataType.DATA_TYPE_BOOL, DataType.DATA_TYPE_FLOAT64])(
    'round-trips dtype %s',
    (dtype) => {
      const value = dtype === DataType.DATA_TYPE_BOOL ? [[true, false]] : [[1, 2]];
      const decoded = decodeTensor(encodeTensor('x', value, spec(dtype)));
      expect(decoded.shape).toEqual([1, 2]);
      expect(decoded.data).toEqual(value);
    },
  );

  it('round-trips strings and rejects non-numbers for numeric inputs', () => {
    expect(decodeTensor(encodeTensor('x', [['a', 'b']], spec(DataType.DATA_TYPE_STRING))).data).toEqual([['a', 'b']]);
    expect(() => encodeTensor('x', [['a', 1]], spec(DataType.DATA_TYPE_FLOAT32))).toThrow(/expected a number/);
    expect(() => encodeTensor('y', [[1]], undefined)).toThrow(/no input "y"/);
  });
});
