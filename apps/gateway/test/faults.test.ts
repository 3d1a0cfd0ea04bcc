import type { ServiceError } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { ConsulRegistrar, homeNodes, SERVICE_INFERENCE } from '@maas/discovery';
import { DataType, type GatewayServiceClient } from '@maas/proto';
import { callUnary } from '@maas/rpc';
import { mlpModel, startDelayProxy, waitFor } from '@maas/testing';
import { startStack, withKey, type Stack } from './stack-fixture';

/** One Predict of the tiny MLP through the gateway, with the predict key. */
function predictOnce(stack: Stack, gateway: InstanceType<typeof GatewayServiceClient>, model: string) {
  return callUnary(
    gateway.predict.bind(gateway),
    {
      model,
      version: 0,
      alias: '',
      inputs: [{ name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, 4], rawData: Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), stringData: [] }],
      outputNames: [],
      sha256: '',
    },
    { metadata: withKey(stack.keys.predict), timeoutMs: 10_000 },
  );
}

/** Steady Predict load from a few concurrent callers, counting answers, failures and latencies. */
function steadyLoad(stack: Stack, model: string, callers = 4) {
  const state = { ok: 0, failures: [] as string[], latencies: [] as number[], stop: false };
  const { gateway } = stack.client();
  const one = async () => {
    while (!state.stop) {
      const started = performance.now();
      try {
        await predictOnce(stack, gateway, model);
        state.ok += 1;
        state.latencies.push(performance.now() - started);
      } catch (err) {
        state.failures.push(`${(err as ServiceError).code}: ${(err as ServiceError).details ?? String(err)}`);
      }
    }
  };
  const running = Promise.all(Array.from({ length: callers }, one));
  return {
    state,
    /** Waits until `n` more answers arrived (or a failure happened). */
    async more(n: number, timeoutMs = 20_000) {
      const target = state.ok + n;
      await waitFor(() => state.ok >= target || state.failures.length > 0, { timeoutMs, description: `${n} more answers` });
    },
    async stop() {
      state.stop = true;
      await running;
      gateway.close();
    },
  };
}

describe('faults under load (registry, two node processes, Redis, Consul double, gateway)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  }, 60_000);
  afterAll(() => stack?.stop());

  it('fails no Predict while Redis is down, and Redis is filled again once it is back', async () => {
    await stack.push('redis-fault', mlpModel(), {}, ['production']);
    const redis = new Redis(stack.redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    const load = steadyLoad(stack, 'redis-fault');
    try {
      await load.more(50);
      await redis.connect();
      expect(await redis.hexists('maas:meta:redis-fault', 'default')).toBe(1);
      redis.disconnect();
      await stack.redis.kill();
      await load.more(300); // every one of these resolved without Redis
      await stack.redis.restart();
      await redis.connect();
      // Nothing was cached in the new (empty) Redis; the gateway's resolutions fill it again.
      await waitFor(async () => (await redis.hexists('maas:meta:redis-fault', 'default')) === 1, { timeoutMs: 10_000, description: 'cache refilled' });
      await load.more(50);
    } finally {
      await load.stop();
      redis.disconnect();
    }
    expect(load.state.failures).toEqual([]);
  });

  it('leaves a node that answers slowly out instead of letting it drag the tail', async () => {
    const delayMs = 250;
    const nodeA = stack.nodes[0];
    const proxy = await startDelayProxy(`127.0.0.1:${nodeA.port}`, delayMs);
    const registrar = new ConsulRegistrar(stack.consul.address);
    try {
      // A third instance: node-a again, but every answer comes 250 ms late, as from a degraded host.
      // No health check through the proxy, so every call it counts is a Predict.
      await registrar.register({ name: SERVICE_INFERENCE, id: 'node-slow', address: '127.0.0.1', port: proxy.port, check: { grpc: false } });
      await waitFor(() => stack.gateway.pool.all().length === 3, { timeoutMs: 10_000, description: 'gateway sees the slow instance' });
      const ids = stack.gateway.pool.all().map((n) => n.instance.id);
      // A model whose two home nodes include the slow one (version 1: the first upload).
      const model = Array.from({ length: 200 }, (_, i) => `slow-home-${i}`).find((m) => homeNodes(m, 1, ids, 2).includes('node-slow'))!;
      await stack.push(model, mlpModel(), {}, ['production']);
      const load = steadyLoad(stack, model);
      const slow = stack.gateway.pool.get('node-slow')!;
      let callsWhenEjected = 0;
      const latencies = load.state.latencies;
      try {
        // A few answers reveal it: least-busy routing alone would keep sending it a share of requests.
        // Outlier ejections last 10 s; a failed call only ejects for 2 s.
        await waitFor(() => slow.ejectedUntil - Date.now() > 5000, { timeoutMs: 5000, description: 'slow node ejected as an outlier' });
        callsWhenEjected = proxy.calls;
        await waitFor(() => slow.inFlight === 0, { description: 'calls already on the slow node answered' });
        latencies.length = 0;
        await load.more(400);
      } finally {
        await load.stop();
      }
      expect(load.state.failures).toEqual([]);
      // While it is out, nothing more goes its way and the tail stays far below its delay.
      expect(proxy.calls).toBe(callsWhenEjected);
      const sorted = [...latencies].sort((a, b) => a - b);
      expect(sorted[Math.floor(sorted.length * 0.99)]).toBeLessThan(delayMs);
    } finally {
      await registrar.shutdown();
      await proxy.stop();
      await waitFor(() => stack.gateway.pool.all().length === 2, { timeoutMs: 10_000, description: 'slow instance gone' });
    }
  });

  it('serves the same client channel again, without the caller retrying, after the gateway restarts', async () => {
    await stack.push('restart', mlpModel(), {}, ['production']);
    const { gateway } = stack.client();
    const predict = () => predictOnce(stack, gateway, 'restart');
    for (let i = 0; i < 20; i++) await predict();
    const oldGateway = stack.gateway;
    await stack.restartGateway();
    expect(stack.gateway).not.toBe(oldGateway);
    // The channel saw its connection close; the next calls reconnect to the new process on the same port.
    for (let i = 0; i < 50; i++) expect((await predict()).outputs).toHaveLength(1);
    gateway.close();
  });

  // Last: it stops a node for good.
  it('fails no Predict while a node drains on SIGTERM under load (a rolling restart), its calls on node frames', async () => {
    await stack.push('drained', mlpModel(), {}, ['production']);
    const victim = stack.nodes[1];
    const load = steadyLoad(stack, 'drained', 8);
    let exit: Promise<number | string> | undefined;
    try {
      // Both nodes are the version's homes (two nodes, two homes); the gateway reaches the victim on its frames port.
      await waitFor(async () => {
        await load.more(20);
        return stack.gateway.pool.get(victim.id)?.frames?.usable;
      }, { timeoutMs: 20_000, description: 'the gateway on the node\'s frames port' });
      const served = load.state.ok;
      exit = victim.child.stop('SIGTERM');
      await load.more(300);
      expect(load.state.ok - served).toBeGreaterThanOrEqual(300);
    } finally {
      await load.stop();
    }
    expect(load.state.failures).toEqual([]);
    expect(await exit).toBe(0);
  });
});
