import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataType } from '@maas/proto';
import { InvalidArgumentError } from '@maas/rpc';
import { identityModel, mlpModel, paddedModel, tempDir, twoInputModel } from '@maas/testing';
import { readOnnxSignature } from './onnx-signature';
import { writePaddedModelFile } from './onnx-model-file';
import { verifyWithOnnxruntime } from './onnx-verify';

describe('readOnnxSignature', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());
  const write = (name: string, bytes: Buffer) => {
    const path = join(dir.path, name);
    writeFileSync(path, bytes);
    return path;
  };

  it('reads names, dtypes and shapes with -1 for named dims, skipping initializers', async () => {
    const signature = await readOnnxSignature(write('mlp.onnx', mlpModel({ inputSize: 4, outputSize: 3 })));
    expect(signature.inputs).toEqual([{ name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [-1, 4], dimNames: ['batch', ''] }]);
    expect(signature.outputs).toEqual([{ name: 'output', dtype: DataType.DATA_TYPE_FLOAT32, shape: [-1, 3], dimNames: ['batch', ''] }]);
    expect(signature.irVersion).toBeGreaterThan(0);
  });

  it('maps ONNX element types to wire dtypes', async () => {
    const int64 = await readOnnxSignature(write('id64.onnx', identityModel(7, [2, 'n'])));
    expect(int64.inputs[0]).toMatchObject({ dtype: DataType.DATA_TYPE_INT64, shape: [2, -1] });
    const two = await readOnnxSignature(write('two.onnx', twoInputModel()));
    expect(two.inputs.map((i) => i.name)).toHaveLength(2);
    expect(two.outputs).toHaveLength(2);
  });

  it('skips large weights without reading them into memory', async () => {
    const path = write('padded.onnx', paddedModel(8 * 1024 * 1024));
    const before = process.memoryUsage().arrayBuffers;
    const signature = await readOnnxSignature(path);
    expect(signature.inputs[0].name).toBe('input');
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(4 * 1024 * 1024);
  });

  it.each([
    ['random bytes', Buffer.from('this is not a model at all, just some text\n')],
    ['an empty file', Buffer.alloc(0)],
    ['a truncated model', mlpModel().subarray(0, 60)],
  ])('rejects %s with INVALID_ARGUMENT', async (_label, bytes) => {
    const path = write(`bad-${_label.replace(/ /g, '-')}.onnx`, bytes);
    await expect(readOnnxSignature(path)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(readOnnxSignature(path)).rejects.toThrow(/ONNX model/);
  });
});

describe('verifyWithOnnxruntime', () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it('accepts a model onnxruntime can load and rejects one it cannot', async () => {
    const good = join(dir.path, 'good.onnx');
    writeFileSync(good, mlpModel());
    await expect(verifyWithOnnxruntime(good)).resolves.toBeUndefined();
    const bad = join(dir.path, 'bad.onnx');
    const bytes = mlpModel();
    writeFileSync(bad, bytes.subarray(0, bytes.length - 7));
    await expect(verifyWithOnnxruntime(bad)).rejects.toThrow(/onnxruntime cannot load the model/);
  });
});

describe('writePaddedModelFile', () => {
  it('writes a streamed, padded model that both the scanner and onnxruntime accept', async () => {

    const dir = tempDir();
    const path = join(dir.path, 'big.onnx');
    const size = await writePaddedModelFile(path, 3 * 1024 * 1024);
    expect(size).toBeGreaterThan(3 * 1024 * 1024);
    expect((await readOnnxSignature(path)).inputs[0].name).toBe('input');
    await expect(verifyWithOnnxruntime(path)).resolves.toBeUndefined();
    dir.remove();
  });
});
