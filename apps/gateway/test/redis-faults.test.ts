import { credentials } from '@grpc/grpc-js';
import { DataType, GatewayServiceClient } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { callUnary } from '@maas/rpc';
import { mlpModel, startRedis, startService, tempDir, type TestRedis, type TestService } from '@maas/testing';
import { join } from 'node:path';

/**
 * Alias flips written through gateway A and read at once through gateway B,
 * while Redis (their shared cache and change channel) hangs with its
 * connections open (SIGSTOP) and while it is killed and restarted empty.
 * An acknowledged flip must be what B serves next: 0 stale answers.
 */
describe('alias flips across gateways through Redis trouble', () => {
  const dir = tempDir('maas-redis-faults-');
  const services: TestService[] = [];
  let redis: TestRedis;
  let writer: RegistryClient;
  let reader: InstanceType<typeof GatewayServiceClient>;
  let versions: number[];

  beforeAll(async () => {
    redis = await startRedis();
    const registry = await startService('registry', 'apps/registry/src/main.ts', { REGISTRY_PORT: '0', REGISTRY_DATA_DIR: join(dir.path, 'registry'), REDIS_URL: redis.url, CONSUL_HTTP_ADDR: '' });
    const node = await startService('node', 'apps/inference/src/main.ts', { INFERENCE_PORT: '0', INFERENCE_CACHE_DIR: join(dir.path, 'node'), REGISTRY_ADDRESS: registry.address, REDIS_URL: redis.url, CONSUL_HTTP_ADDR: '' });
    const gateway = (name: string) =>
      startService(name, 'apps/gateway/src/main.ts', { GATEWAY_PORT: '0', GATEWAY_AUTH: 'off', REGISTRY_ADDRESS: registry.address, INFERENCE_NODES: node.address, REDIS_URL: redis.url, CONSUL_HTTP_ADDR: '' });
    const [a, b] = await Promise.all([gateway('gateway-a'), gateway('gateway-b')]);
    services.push(registry, node, a, b);
    writer = new RegistryClient(a.address);
    reader = new GatewayServiceClient(b.address, credentials.createInsecure());
    await writer.createModel('flip');
    versions = [];
    for (const seed of [1, 2]) {
      versions.push((await writer.upload({ model: 'flip', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: ['production'] }, [mlpModel({ seed })])).version);
    }
  }, 90_000);

  afterAll(async () => {
    if (redis?.pid) process.kill(redis.pid, 'SIGCONT');
    writer?.close();
    reader?.close();
    await Promise.all(services.map((s) => s.child.stop('SIGTERM').catch(() => s.child.stop('SIGKILL'))));
    await redis?.stop();
    dir.remove();
  });

  let flips = 0;
  /** Each stale read: the flip, what was served, and what a second read served. */
  const seen: string[] = [];
  /** Flips `production` through A, reads through B at once; returns the stale reads. */
  async function flipAndRead(times: number): Promise<number> {
    let stale = 0;
    const input = { name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, 4], rawData: Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), stringData: [] };
    const read = () => callUnary(reader.predict.bind(reader), { model: 'flip', version: 0, alias: '', inputs: [input], outputNames: [], sha256: '' }, { timeoutMs: 10_000 });
    for (let i = 0; i < times; i++) {
      const target = versions[flips++ % 2];
      await writer.setAlias('flip', 'production', target, { timeoutMs: 10_000 });
      const answer = await read();
      if (answer.version !== target) {
        stale += 1;
        seen.push(`flip ${flips} to v${target}: served v${answer.version}, then v${(await read()).version}`);
      }
    }
    return stale;
  }

  it('serves no stale alias while Redis is healthy, hung, or restarted', async () => {
    const healthy = await flipAndRead(20);
    const frozen = redis.pid!;
    process.kill(frozen, 'SIGSTOP');
    let hung: number;
    try {
      hung = await flipAndRead(6);
    } finally {
      process.kill(frozen, 'SIGCONT');
    }
    const resumed = await flipAndRead(20);
    await redis.kill();
    const down = await flipAndRead(4);
    await redis.restart();
    const restarted = await flipAndRead(40);
    console.log(`stale reads through gateway B: healthy ${healthy}/20, Redis hung ${hung}/6, after SIGCONT ${resumed}/20, Redis down ${down}/4, after restart ${restarted}/40`);
    // Under CPU contention Redis can still hold a write's change event when the writer's acknowledgement has
    // already reached the client and its next read has reached B: B's memory is checked against the model's
    // generation in Redis before it answers, so none of these may be stale (run with CPU hogs to see it).
    expect({ healthy, hung, resumed, down, restarted, seen }).toEqual({ healthy: 0, hung: 0, resumed: 0, down: 0, restarted: 0, seen: [] });
  }, 180_000);
});
