import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { DataType, type Tensor } from '@maas/proto';
import { mlpModel, seededFloats, tempDir } from '@maas/testing';
import { openSession, type SessionRunner } from './session-runner';

const options = { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 as const };

function input(values: Float32Array): Tensor {
  return { name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [values.length / 4, 4], rawData: Buffer.from(values.buffer), stringData: [] };
}

function floats(tensor: Tensor): number[] {
  const raw = Buffer.from(tensor.rawData);
  return Array.from({ length: raw.length / 4 }, (_, i) => raw.readFloatLE(i * 4));
}

describe('openSession', () => {
  let dir: ReturnType<typeof tempDir>;
  let path: string;
  let runner: SessionRunner | undefined;
  let expected: (values: Float32Array) => Promise<number[]>;

  beforeAll(() => {
    dir = tempDir();
    path = join(dir.path, 'mlp.onnx');
    writeFileSync(path, mlpModel({ seed: 7 }));
    expected = async (values) => {
      const session = await InferenceSession.create(path, options);
      const out = await session.run({ input: new OrtTensor('float32', values, [values.length / 4, 4]) });
      await session.release();
      return Array.from(out.output.data as Float32Array);
    };
  });
  afterEach(async () => {
    await runner?.release();
    runner = undefined;
  });
  afterAll(() => dir.remove());

  it('runs instance_count sessions side by side, each run on the least busy instance', async () => {
    runner = await openSession(path, options, { thread: false, instances: 3 });
    expect(runner).toMatchObject({ where: 'thread', instances: 3 });
    const inputs = [seededFloats(8, 1), seededFloats(8, 2), seededFloats(8, 3), seededFloats(8, 4)];
    const runs = inputs.map((values) => runner!.run([input(values)], ['output']));
    // Three idle instances take one run each; the fourth queues behind the first.
    expect(runner.busy()).toEqual([2, 1, 1]);
    const answers = await Promise.all(runs);
    expect(runner.busy()).toEqual([0, 0, 0]);
    for (const [i, values] of inputs.entries()) expect(floats(answers[i].outputs[0])).toEqual(await expected(values));
  });

  it('keeps a single instance on the event loop thread unless asked for a thread', async () => {
    runner = await openSession(path, options, { thread: false });
    expect(runner).toMatchObject({ where: 'main', instances: 1 });
    const values = seededFloats(4, 9);
    expect(floats((await runner.run([input(values)], ['output'])).outputs[0])).toEqual(await expected(values));

    await runner.release();
    runner = await openSession(path, options, { thread: true });
    expect(runner).toMatchObject({ where: 'thread', instances: 1 });
    const answer = await runner.run([input(values)], ['output']);
    expect(floats(answer.outputs[0])).toEqual(await expected(values));
    // A session thread says what CPU time its run took (Linux's per-thread schedstat, tick-grained: this run
    // is shorter than a tick, so it may read 0), for adaptive batching.
    if (process.platform === 'linux') expect(answer.cpuMs).toBeGreaterThanOrEqual(0);
  });

  it('runs on a session thread an input whose bytes sit at any offset of a larger buffer, leaving that buffer intact', async () => {
    runner = await openSession(path, options, { thread: true });
    const values = seededFloats(8, 5);
    const want = await expected(values);
    for (const offset of [0, 1, 3, 4]) {
      // As a request decoded from the wire: the tensor is a view into the received message.
      const received = Buffer.alloc(offset + values.byteLength + 3, 0xee);
      Buffer.from(values.buffer).copy(received, offset);
      const tensor = { ...input(values), rawData: received.subarray(offset, offset + values.byteLength) };
      expect(floats((await runner.run([tensor], ['output'])).outputs[0])).toEqual(want);
      // The copy moved to the thread, not the request's memory: the view still reads the same bytes.
      expect(tensor.rawData.byteLength).toBe(values.byteLength);
      expect(tensor.rawData.equals(Buffer.from(values.buffer))).toBe(true);
    }
  });

  it('fails to open several instances of an artifact that is not a model', async () => {
    const bad = join(dir.path, 'bad.onnx');
    writeFileSync(bad, 'not an onnx model');
    await expect(openSession(bad, options, { thread: true, instances: 2 })).rejects.toThrow();
  });
});
