import { ModelChangeEvent, ModelChangeEvent_Kind } from '@maas/proto';
import { startRedis, waitFor, type TestRedis } from '@maas/testing';
import { MemoryMetadataCache } from './cache-memory';
import { RedisMetadataCache } from './cache-redis';
import { readThrough } from './cached-metadata';
import { BUS_DOWN_DETECTION_MS, RedisChangeBus } from './change-bus';
import type { MetadataCache } from './metadata-cache';

const text = { encode: (v: string) => v, decode: (s: string) => s };

describe.each([
  ['memory', async () => ({ cache: new MemoryMetadataCache() as MetadataCache, stop: async () => {} })],
  [
    'redis',
    async () => {
      const redis = await startRedis();
      const cache = new RedisMetadataCache({ url: redis.url });
      expect(await cache.ready()).toBe(true);
      return { cache: cache as MetadataCache, stop: async () => (await cache.shutdown(), await redis.stop()) };
    },
  ],
])('%s metadata cache', (_name, make) => {
  let cache: MetadataCache;
  let stop: () => Promise<void>;
  beforeEach(async () => ({ cache, stop } = await make()));
  afterEach(() => stop());

  it('loads on a miss, then serves hits without loading', async () => {
    const load = jest.fn(async () => 'v1');
    expect(await readThrough(cache, 'mlp', 'a:production', text, load)).toBe('v1');
    expect(await readThrough(cache, 'mlp', 'a:production', text, load)).toBe('v1');
    expect(load).toHaveBeenCalledTimes(1);
    expect(cache.stats).toMatchObject({ hits: 1, misses: 1 });
  });

  it('invalidates every entry of one model and leaves other models alone', async () => {
    await readThrough(cache, 'mlp', 'a:production', text, async () => 'v1');
    await readThrough(cache, 'other', 'model', text, async () => 'o1');
    await cache.invalidate('mlp');
    expect(await readThrough(cache, 'mlp', 'a:production', text, async () => 'v2')).toBe('v2');
    expect(await readThrough(cache, 'other', 'model', text, async () => 'o2')).toBe('o1');
  });

  it('does not store a value loaded before an invalidation', async () => {
    const staleRead = await cache.get('mlp', 'a:production');
    await cache.invalidate('mlp'); // a write lands while the stale load runs
    await cache.set('mlp', 'a:production', 'stale', staleRead.generation);
    expect((await cache.get('mlp', 'a:production')).value).toBeUndefined();
  });

  it('does not cache loader failures', async () => {
    await expect(readThrough(cache, 'mlp', 'model', text, async () => Promise.reject(new Error('store down')))).rejects.toThrow('store down');
    expect(await readThrough(cache, 'mlp', 'model', text, async () => 'ok')).toBe('ok');
  });
});

describe('RedisMetadataCache with Redis going away', () => {
  let redis: TestRedis;
  let cache: RedisMetadataCache;
  beforeEach(async () => {
    redis = await startRedis();
    cache = new RedisMetadataCache({ url: redis.url, commandTimeoutMs: 200 });
    expect(await cache.ready()).toBe(true);
  });
  afterEach(async () => {
    await cache.shutdown();
    await redis.stop();
  });

  it('reads through to the loader while Redis is down, quickly, and caches again once it is back', async () => {
    await readThrough(cache, 'mlp', 'model', text, async () => 'cached');
    await redis.kill();
    await waitFor(() => cache.redis.status !== 'ready');
    const started = Date.now();
    expect(await readThrough(cache, 'mlp', 'model', text, async () => 'from-store')).toBe('from-store');
    expect(Date.now() - started).toBeLessThan(1000);
    expect(cache.stats.errors).toBeGreaterThan(0);

    await redis.restart();
    await waitFor(() => cache.redis.status === 'ready', { timeoutMs: 10_000 });
    const load = jest.fn(async () => 'fresh');
    await readThrough(cache, 'mlp', 'model', text, load);
    expect(await readThrough(cache, 'mlp', 'model', text, load)).toBe('fresh');
    expect(load).toHaveBeenCalledTimes(1);
  });

  it('replays an invalidation that could not reach Redis once it is back', async () => {
    await readThrough(cache, 'mlp', 'model', text, async () => 'old');
    const generation = (await cache.get('mlp', 'model')).generation;
    cache.redis.disconnect(true); // drop the connection; the client reconnects by itself
    await cache.invalidate('mlp'); // fails now, queued for replay
    await waitFor(() => cache.redis.status === 'ready', { timeoutMs: 10_000 });
    await waitFor(async () => (await cache.get('mlp', 'model')).generation !== generation);
    expect((await cache.get('mlp', 'model')).value).toBeUndefined();
  });
});

describe('RedisChangeBus', () => {
  let redis: TestRedis;
  beforeAll(async () => (redis = await startRedis()));
  afterAll(() => redis.stop());

  it('delivers events published by one process-side bus to another', async () => {
    const publisher = new RedisChangeBus({ url: redis.url });
    const subscriber = new RedisChangeBus({ url: redis.url });
    const seen: ModelChangeEvent[] = [];
    subscriber.subscribe((event) => seen.push(event));
    await subscriber.ready();
    const event: ModelChangeEvent = { kind: ModelChangeEvent_Kind.KIND_ALIAS_SET, model: 'mlp', version: 2, alias: 'production', time: new Date(), writeId: 'w1' };
    await publisher.publish(event);
    await waitFor(() => seen.length === 1);
    expect(seen[0]).toEqual(event);
    await publisher.shutdown();
    await subscriber.shutdown();
  });

  it('finds a hung Redis (connections open, nothing answered) down within its probe bound, and live again after', async () => {
    const bus = new RedisChangeBus({ url: redis.url });
    const changes: boolean[] = [];
    bus.onLiveChange((live) => changes.push(live));
    await bus.ready();
    await waitFor(() => bus.live);
    const pid = redis.pid!;
    process.kill(pid, 'SIGSTOP');
    const frozenAt = Date.now();
    try {
      await waitFor(() => !bus.live, { timeoutMs: 2000, description: 'the bus to notice the hang' });
      expect(Date.now() - frozenAt).toBeLessThan(BUS_DOWN_DETECTION_MS);
      // A publish that cannot go out holds its caller until every subscriber has noticed.
      const started = Date.now();
      await bus.publish({ kind: ModelChangeEvent_Kind.KIND_ALIAS_SET, model: 'm', version: 1, alias: 'a', time: new Date(), writeId: '' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(BUS_DOWN_DETECTION_MS - 5);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await waitFor(() => bus.live, { timeoutMs: 3000, description: 'the bus to be live again' });
    expect(changes).toEqual([true, false, true]);
    await bus.shutdown();
  });
});
