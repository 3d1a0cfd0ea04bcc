import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { DataType } from '@maas/proto';
import { callUnary } from '@maas/rpc';
import { mlpModel, paddedModel, seededFloats, tempDir, waitFor } from '@maas/testing';
import { predictCost } from '../src/version-cost';
import { floatsOf, floatTensor, startNodeFixture, type NodeFixture } from './node-fixture';

async function failure(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    return { code: (err as ServiceError).code, details: (err as ServiceError).details };
  }
  throw new Error('expected the call to fail');
}

describe('inference node over gRPC with a real registry', () => {
  let f: NodeFixture;
  afterEach(() => f.stop());

  it.each([
    ['inline', {}, 'main'],
    ['on a session thread', { sessionThreadMinBytes: 0 }, 'thread'],
  ])('answers exactly what onnxruntime answers in-process on the same inputs (%s)', async (_name, overrides, runsOn) => {
    f = await startNodeFixture(overrides);
    const bytes = mlpModel({ seed: 3 });
    const version = await f.push('mlp', bytes);
    const values = seededFloats(5 * 4, 11);
    const response = await f.predict('mlp', version, [floatTensor('input', [5, 4], values)]);
    expect(response).toMatchObject({ model: 'mlp', version });
    expect(response.outputs[0]).toMatchObject({ name: 'output', dtype: DataType.DATA_TYPE_FLOAT32, shape: [5, 3] });

    const dir = tempDir();
    const path = join(dir.path, 'mlp.onnx');
    writeFileSync(path, bytes);
    const session = await InferenceSession.create(path);
    const expected = await session.run({ input: new OrtTensor('float32', values, [5, 4]) });
    await session.release();
    dir.remove();
    expect(floatsOf(response.outputs[0])).toEqual(Array.from(expected.output.data as Float32Array));
    expect(f.node.manager.find('mlp', version)?.runsOn).toBe(runsOn);
  });

  it('batches concurrent requests on a session thread and gives each request its own rows', async () => {
    f = await startNodeFixture({ sessionThreadMinBytes: 0 });
    const version = await f.push('mlp', mlpModel({ seed: 5 }), { maxBatchSize: 16, maxQueueDelayMicros: 20_000 });
    const inputs = Array.from({ length: 16 }, (_, i) => seededFloats(4, 300 + i));
    const answers = await Promise.all(inputs.map((values) => f.predict('mlp', version, [floatTensor('input', [1, 4], values)])));
    for (const i of [0, 9, 15]) {
      const alone = await f.predict('mlp', version, [floatTensor('input', [1, 4], inputs[i])]);
      expect(floatsOf(answers[i].outputs[0])).toEqual(floatsOf(alone.outputs[0]));
    }
    // Unloading stops the thread cleanly; the version loads again on demand.
    expect(await f.node.manager.unload('mlp', version)).toBe(true);
    expect((await f.predict('mlp', version, [floatTensor('input', [1, 4], inputs[0])])).outputs[0].shape).toEqual([1, 3]);
  });

  it('runs a version with instance_count 2 as two sessions on threads of their own, each request getting its own rows', async () => {
    f = await startNodeFixture();
    const bytes = mlpModel({ seed: 6 });
    const version = await f.push('mlp', bytes, { maxBatchSize: 1, instanceCount: 2 });
    const inputs = Array.from({ length: 12 }, (_, i) => seededFloats(4, 500 + i));
    const answers = await Promise.all(inputs.map((values) => f.predict('mlp', version, [floatTensor('input', [1, 4], values)])));
    const loaded = f.node.manager.find('mlp', version)!;
    expect({ runsOn: loaded.runsOn, instances: loaded.instances }).toEqual({ runsOn: 'thread', instances: 2 });
    // Two sessions cost at least what two instances are predicted to (measured growth may add to it).
    expect(loaded.memoryBytes).toBeGreaterThanOrEqual(predictCost({ sizeBytes: bytes.length, runtime: loaded.version.runtime }));
    const dir = tempDir();
    const path = join(dir.path, 'mlp.onnx');
    writeFileSync(path, bytes);
    const session = await InferenceSession.create(path);
    for (const i of [0, 5, 11]) {
      const expected = await session.run({ input: new OrtTensor('float32', inputs[i], [1, 4]) });
      expect(floatsOf(answers[i].outputs[0])).toEqual(Array.from(expected.output.data as Float32Array));
    }
    await session.release();
    dir.remove();
  });

  it('batches 64 concurrent requests into few runs and gives each request its own rows', async () => {
    f = await startNodeFixture();
    const version = await f.push('mlp', mlpModel({ seed: 5 }), { maxBatchSize: 64, maxQueueDelayMicros: 20_000 });
    await f.predict('mlp', version, [floatTensor('input', [1, 4], [0, 0, 0, 0])]); // load first
    const batches: number[] = [];
    f.node.manager.events.on('batch', (e: { rows: number }) => batches.push(e.rows));
    const inputs = Array.from({ length: 64 }, (_, i) => seededFloats(4, 100 + i));
    const answers = await Promise.all(inputs.map((values) => f.predict('mlp', version, [floatTensor('input', [1, 4], values)])));
    expect(batches.reduce((a, b) => a + b, 0)).toBe(64);
    expect(batches.length).toBeLessThanOrEqual(8);
    // Each answer equals the same input run alone.
    for (const i of [0, 17, 63]) {
      const alone = await f.predict('mlp', version, [floatTensor('input', [1, 4], inputs[i])]);
      expect(floatsOf(answers[i].outputs[0])).toEqual(floatsOf(alone.outputs[0]));
    }
  });

  it('answers INVALID_ARGUMENT with the expected signature for every kind of bad input', async () => {
    f = await startNodeFixture();
    const version = await f.push('mlp', mlpModel());
    const good = floatTensor('input', [1, 4], [1, 2, 3, 4]);
    const cases = [
      [[{ ...good, name: 'nope' }], /unknown input "nope": the model expects input: float32\[-1,4\]/],
      [[], /missing input "input"/],
      [[good, good], /given twice/],
      [[{ ...good, dtype: DataType.DATA_TYPE_INT32 }], /dtype mismatch; expected float32\[-1,4\], got int32\[1,4\]/],
      [[{ ...good, shape: [4] }], /rank 1 instead of 2/],
      [[{ ...good, shape: [1, 5] }], /dimension 1 must be 4/],
      [[{ ...good, shape: [-1, 4] }], /dimension 0 is -1/],
      [[{ ...good, shape: [4_000_000_000, 4] }], /above the limit/],
      [[{ ...good, rawData: Buffer.alloc(15) }], /raw_data has 15 bytes, expected 4 elements × 4 bytes = 16/],
      [[{ ...good, dtype: DataType.DATA_TYPE_UNSPECIFIED }], /dtype mismatch/],
    ] as const;
    for (const [inputs, message] of cases) {
      const result = await failure(f.predict('mlp', version, inputs as never));
      expect(result.code).toBe(status.INVALID_ARGUMENT);
      expect(result.details).toMatch(message);
    }
    expect((await failure(f.predict('mlp', 99, [good]))).code).toBe(status.NOT_FOUND);
    expect((await failure(f.predict('../x', 1, [good]))).code).toBe(status.INVALID_ARGUMENT);
    // Still serving after all that.
    expect((await f.predict('mlp', version, [good])).outputs).toHaveLength(1);
  });

  it('answers RESOURCE_EXHAUSTED when the version queue is full', async () => {
    f = await startNodeFixture();
    const version = await f.push('mlp', mlpModel(), { maxBatchSize: 64, maxQueueDelayMicros: 2_000_000, maxQueueSize: 4 });
    await f.node.manager.get('mlp', version);
    const waiting = Array.from({ length: 4 }, () => f.predict('mlp', version, [floatTensor('input', [1, 4], [1, 1, 1, 1])]));
    await waitFor(() => f.node.manager.find('mlp', version)!.batcher.queueDepth === 4);
    const overflow = await failure(f.predict('mlp', version, [floatTensor('input', [1, 4], [1, 1, 1, 1])]));
    expect(overflow).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('queue full') });
    expect((await Promise.all(waiting)).length).toBe(4);
  });

  it('drops a queued request whose deadline passes before it runs', async () => {
    f = await startNodeFixture();
    const version = await f.push('mlp', mlpModel(), { maxBatchSize: 64, maxQueueDelayMicros: 1_000_000 });
    await f.node.manager.get('mlp', version);
    const result = await failure(f.predict('mlp', version, [floatTensor('input', [1, 4], [1, 1, 1, 1])], { timeoutMs: 100 }));
    expect(result.code).toBe(status.DEADLINE_EXCEEDED);
    const batches: number[] = [];
    f.node.manager.events.on('batch', (e: { rows: number }) => batches.push(e.rows));
    await waitFor(() => f.node.manager.find('mlp', version)!.batcher.queueDepth === 0, { timeoutMs: 3000 });
    expect(batches).toEqual([]); // it never ran
  });

  it('loads a version once for concurrent first requests (one download, one session)', async () => {
    f = await startNodeFixture();
    const version = await f.push('mlp', mlpModel());
    const loads: unknown[] = [];
    f.node.manager.events.on('loaded', (v) => loads.push(v));
    await Promise.all(Array.from({ length: 16 }, () => f.predict('mlp', version, [floatTensor('input', [1, 4], [1, 2, 3, 4])])));
    expect(loads).toHaveLength(1);
    expect(f.node.artifacts.downloads).toBe(1);
  });

  it('unloads the least recently used idle version to stay under a small memory budget', async () => {
    // Room for two versions as predicted, not three (what their loads measure may add a little).
    const cost = predictCost({ sizeBytes: paddedModel(256 * 1024).length, runtime: undefined });
    f = await startNodeFixture({ memoryBudgetBytes: Math.round(cost * 2.5) });
    const a = await f.push('a', paddedModel(256 * 1024, { seed: 1 }));
    const b = await f.push('b', paddedModel(256 * 1024, { seed: 2 }));
    const c = await f.push('c', paddedModel(256 * 1024, { seed: 3 }));
    const input = [floatTensor('input', [1, 4], [1, 2, 3, 4])];
    await f.predict('a', a, input);
    await f.predict('b', b, input);
    await f.predict('a', a, input); // b is now least recently used
    await f.predict('c', c, input);
    const loaded = await callUnary(f.client.listLoaded.bind(f.client), {});
    expect(loaded.models.map((m) => m.model).sort()).toEqual(['a', 'c']);
    expect(loaded.memoryUsedBytes).toBeLessThanOrEqual(loaded.memoryBudgetBytes);
  });

  it('hot-swaps versions under load with zero failed requests', async () => {
    f = await startNodeFixture();
    const v1 = await f.push('mlp', mlpModel({ seed: 1 }), { maxBatchSize: 16, maxQueueDelayMicros: 1000 });
    const v2 = await f.push('mlp', mlpModel({ seed: 2 }), { maxBatchSize: 16, maxQueueDelayMicros: 1000 });
    let target = v1;
    let stop = false;
    let ok = 0;
    let toV1 = 0;
    const failures: unknown[] = [];
    const worker = async () => {
      while (!stop) {
        const version = target;
        if (version === v1) toV1 += 1;
        try {
          await f.predict('mlp', version, [floatTensor('input', [1, 4], [1, 2, 3, 4])]);
          ok += 1;
        } catch (err) {
          failures.push(err);
        } finally {
          if (version === v1) toV1 -= 1;
        }
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    try {
      await waitFor(() => ok > 50 || failures.length > 0);
      await callUnary(f.client.loadModel.bind(f.client), { model: 'mlp', version: v2 });
      target = v2;
      // A request that names v1 explicitly loads it again: unload once the last of those has been answered.
      await waitFor(() => toV1 === 0);
      await callUnary(f.client.unloadModel.bind(f.client), { model: 'mlp', version: v1 });
      const after = ok;
      await waitFor(() => ok > after + 50 || failures.length > 0);
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    expect(failures).toEqual([]);
    expect(f.node.manager.list().map((m) => m.version.version)).toEqual([v2]);
  });
  it('never answers from a deleted model: re-created under the same name and version, the new artifact answers', async () => {
    f = await startNodeFixture();
    const input = [floatTensor('input', [1, 4], [1, 2, 3, 4])];
    await f.push('m', mlpModel({ seed: 1 }));
    const oldSha = (await f.registry.getVersion('m', 1)).sha256;
    const before = floatsOf((await f.predict('m', 1, input)).outputs[0]);
    await f.registry.deleteModel('m');
    await f.registry.createModel('m');
    await f.registry.upload({ model: 'm', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] }, [mlpModel({ seed: 2 })]);
    const newSha = (await f.registry.getVersion('m', 1)).sha256;
    // Without a sha256 the node asks the registry; with the new one it loads it; with the old one it refuses.
    const after = floatsOf((await f.predict('m', 1, input)).outputs[0]);
    expect(after).not.toEqual(before);
    const named = (sha256: string) => callUnary(f.client.predict.bind(f.client), { model: 'm', version: 1, alias: '', inputs: input, outputNames: [], sha256 });
    expect(floatsOf((await named(newSha)).outputs[0])).toEqual(after);
    await expect(named(oldSha)).rejects.toMatchObject({ code: status.ABORTED, details: expect.stringContaining('resolve it again') });
    await expect(named('XYZ')).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(f.node.manager.list().map((m) => m.sha256)).toEqual([newSha]);
  });

  it('unloads versions of a deleted model by its periodic check, without Redis', async () => {
    f = await startNodeFixture({ reconcileIntervalMs: 200 });
    await f.push('gone', mlpModel({ seed: 1 }));
    await f.predict('gone', 1, [floatTensor('input', [1, 4], [1, 2, 3, 4])]);
    expect(f.node.manager.find('gone', 1)).toBeDefined();
    const started = Date.now();
    await f.registry.deleteModel('gone');
    await waitFor(() => f.node.manager.find('gone', 1) === undefined, { timeoutMs: 2000, description: 'the deleted version to be unloaded' });
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('refuses zero-size dimensions before onnxruntime sees them', async () => {
    f = await startNodeFixture();
    await f.push('z', mlpModel());
    await expect(f.predict('z', 1, [floatTensor('input', [0, 4], [])])).rejects.toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('dimension 0 is 0') });
  });
});
