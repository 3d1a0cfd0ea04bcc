import { status, type ServiceError } from '@grpc/grpc-js';
import { DataType, type PredictResponse, type Tensor } from '@maas/proto';
import { callUnary, type CallOpts } from '@maas/rpc';
import { RegistryClient } from '@maas/registry-client';
import { mlpModel, waitFor } from '@maas/testing';
import { homeNodes } from '@maas/discovery';
import { startStack, withKey, type Stack } from './stack-fixture';

const input = (values = [1, 2, 3, 4]): Tensor => ({
  name: 'input',
  dtype: DataType.DATA_TYPE_FLOAT32,
  shape: [1, 4],
  rawData: Buffer.from(Float32Array.from(values).buffer),
  stringData: [],
});

async function failure(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    return { code: (err as ServiceError).code, details: (err as ServiceError).details };
  }
  throw new Error('expected the call to fail');
}

describe('gateway end to end (registry, two node processes, Redis, Consul double)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  }, 60_000);
  afterAll(() => stack?.stop());

  const predict = (model: string, opts: CallOpts & { version?: number; alias?: string } = {}, key = stack.keys.predict): Promise<PredictResponse> => {
    const { gateway } = stack.client();
    return callUnary(
      gateway.predict.bind(gateway),
      { model, version: opts.version ?? 0, alias: opts.alias ?? '', inputs: [input()], outputNames: [], sha256: '' },
      { ...opts, metadata: withKey(key) },
    );
  };

  it('push → alias → Predict through the gateway', async () => {
    const v1 = await stack.push('e2e', mlpModel({ seed: 1 }));
    await stack.client(stack.keys.admin).registry.setAlias('e2e', 'production', v1);
    const answer = await predict('e2e');
    expect(answer).toMatchObject({ model: 'e2e', version: v1 });
    expect(answer.outputs[0].shape).toEqual([1, 3]);
  });

  it('carries the request id from the caller through the gateway into the node log', async () => {
    await stack.push('traced', mlpModel(), {}, ['production']);
    const metadata = withKey(stack.keys.predict);
    metadata.set('x-request-id', 'trace-4711');
    const { gateway } = stack.client();
    await callUnary(gateway.predict.bind(gateway), { model: 'traced', version: 0, alias: '', inputs: [input()], outputNames: [], sha256: '' }, { metadata });
    const logged = await Promise.race(
      stack.nodes.map((n) => n.child.waitForLine((l) => l.json?.requestId === 'trace-4711' && l.json?.method === 'Predict', 5000)),
    );
    expect(logged.json).toMatchObject({ model: 'traced', code: 'OK', msg: 'rpc' });
  });

  it('sees an alias flip on the very next request', async () => {
    const v1 = await stack.push('flip', mlpModel({ seed: 1 }), {}, ['production']);
    const v2 = await stack.push('flip', mlpModel({ seed: 2 }));
    expect((await predict('flip')).version).toBe(v1);
    expect((await predict('flip')).version).toBe(v1); // cached now
    await stack.client(stack.keys.admin).registry.setAlias('flip', 'production', v2);
    expect((await predict('flip')).version).toBe(v2);
  });

  it('drops its in-memory resolution when a write made straight at the registry is announced', async () => {
    const v1 = await stack.push('flip-direct', mlpModel({ seed: 1 }), {}, ['production']);
    const v2 = await stack.push('flip-direct', mlpModel({ seed: 2 }));
    expect((await predict('flip-direct')).version).toBe(v1);
    expect((await predict('flip-direct')).version).toBe(v1); // now held in the gateway's memory
    const direct = new RegistryClient(stack.registry.address);
    try {
      await direct.setAlias('flip-direct', 'production', v2);
    } finally {
      direct.close();
    }
    // The memory entry lives 10 s; only the change event can make this pass within 2 s.
    await waitFor(async () => (await predict('flip-direct')).version === v2, { timeoutMs: 2000, description: 'gateway resolves the new alias target' });
  });

  it('loads each model version on its rendezvous home node', async () => {
    const ids = stack.nodes.map((n) => n.id);
    const models = ['home-a', 'home-b', 'home-c', 'home-d', 'home-e', 'home-f'];
    for (const model of models) {
      const version = await stack.push(model, mlpModel({ seed: model.length }));
      await predict(model, { version });
    }
    const loadedOn = new Map<string, string[]>();
    for (const node of stack.nodes) {
      const list = await callUnary(node.client.listLoaded.bind(node.client), {});
      for (const m of list.models) loadedOn.set(m.model, [...(loadedOn.get(m.model) ?? []), node.id]);
    }
    for (const model of models) {
      // Sequential requests find both homes idle, so the first-ranked home takes the model.
      expect(loadedOn.get(model)).toEqual([homeNodes(model, 1, ids, 2)[0]]);
    }
    expect(new Set(models.map((m) => homeNodes(m, 1, ids, 2)[0])).size).toBe(2);
  });

  it('propagates the caller deadline to the node, which drops the queued work', async () => {
    const version = await stack.push('slow', mlpModel(), { maxBatchSize: 64, maxQueueDelayMicros: 3_000_000 });
    await stack.client(stack.keys.admin).registry.setAlias('slow', 'production', version);
    const home = stack.nodes.find((n) => n.id === homeNodes('slow', version, stack.nodes.map((x) => x.id), 2)[0])!;
    await callUnary(home.client.loadModel.bind(home.client), { model: 'slow', version });
    const started = Date.now();
    const result = await failure(predict('slow', { timeoutMs: 300 }));
    expect(result.code).toBe(status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(2000);
    // The node dropped the request long before its 3 s batching window ended.
    const depth = async () => (await callUnary(home.client.listLoaded.bind(home.client), {})).models.find((m) => m.model === 'slow')?.queueDepth;
    await waitFor(async () => (await depth()) === 0, { timeoutMs: 1500 });
    expect(Date.now() - started).toBeLessThan(2500);
  });

  it('enforces API keys: none, unknown, predict key on admin calls, rate limit', async () => {
    await stack.push('authz', mlpModel());
    const { gateway } = stack.client();
    const call = (key?: string) =>
      callUnary(gateway.predict.bind(gateway), { model: 'authz', version: 0, alias: '', inputs: [input()], outputNames: [], sha256: '' }, key ? { metadata: withKey(key) } : {});
    expect(await failure(call())).toMatchObject({ code: status.UNAUTHENTICATED, details: expect.stringContaining('authorization: Bearer') });
    expect((await failure(call('maas_not-a-key'))).code).toBe(status.UNAUTHENTICATED);
    expect((await failure(stack.client(stack.keys.predict).registry.createModel('nope'))).code).toBe(status.PERMISSION_DENIED);
    expect((await call(stack.keys.predict)).outputs).toHaveLength(1);
    const limited = await Promise.allSettled(Array.from({ length: 6 }, () => call(stack.keys.limited)));
    const codes = limited.map((r) => (r.status === 'fulfilled' ? status.OK : (r.reason as ServiceError).code));
    expect(codes.filter((c) => c === status.OK).length).toBeGreaterThanOrEqual(1);
    expect(codes).toContain(status.RESOURCE_EXHAUSTED);
  });

  it('fails no request while the home node of the model is killed mid-stream', async () => {
    const version = await stack.push('failover', mlpModel(), {}, ['production']);
    let stop = false;
    let ok = 0;
    const failures: unknown[] = [];
    const worker = async () => {
      while (!stop) {
        try {
          await predict('failover', { timeoutMs: 10_000 });
          ok += 1;
        } catch (err) {
          failures.push((err as ServiceError).details ?? err);
        }
      }
    };
    const workers = Array.from({ length: 4 }, worker);
    try {
      await waitFor(() => ok > 30 || failures.length > 0);
      const victim = stack.nodes.find((n) => n.id === homeNodes('failover', version, stack.nodes.map((x) => x.id), 2)[0])!;
      victim.child.process.kill('SIGKILL');
      const after = ok;
      await waitFor(() => ok > after + 100 || failures.length > 0, { timeoutMs: 20_000 });
    } finally {
      stop = true;
      await Promise.all(workers);
    }
    expect(failures).toEqual([]);
  });
});
