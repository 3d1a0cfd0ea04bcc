import { ModelChangeEvent_Kind } from '@maas/proto';
import { startRedis, waitFor, type TestRedis } from '@maas/testing';
import { NearMetadataCache } from './cache-near';
import { RedisMetadataCache } from './cache-redis';
import { readThrough } from './cached-metadata';
import { RedisChangeBus } from './change-bus';

const text = { encode: (v: string) => v, decode: (s: string) => s };

describe('NearMetadataCache over Redis, kept coherent by the change bus', () => {
  let redis: TestRedis;
  let bus: RedisChangeBus;
  let otherBus: RedisChangeBus;
  let shared: RedisMetadataCache;
  let other: RedisMetadataCache;
  let near: NearMetadataCache;

  beforeEach(async () => {
    redis = await startRedis();
    bus = new RedisChangeBus({ url: redis.url });
    otherBus = new RedisChangeBus({ url: redis.url });
    shared = new RedisMetadataCache({ url: redis.url });
    other = new RedisMetadataCache({ url: redis.url });
    near = new NearMetadataCache(shared, bus, { ttlMs: 60_000 });
    await Promise.all([shared.ready(), other.ready(), bus.ready()]);
    await waitFor(() => bus.live, { description: 'bus subscribed' });
  });
  afterEach(async () => {
    await near.shutdown();
    await Promise.all([bus.shutdown(), otherBus.shutdown(), other.shutdown()]);
    await redis.stop();
  });

  /** What another process (the registry) does on a write: invalidate the shared cache, publish the change. */
  const writeElsewhere = async (model: string) => {
    await other.invalidate(model);
    await otherBus.publish({ kind: ModelChangeEvent_Kind.KIND_ALIAS_SET, model, version: 2, alias: 'production', time: new Date(), writeId: '' });
  };

  it('answers a repeated read from memory, asking Redis only for the generation', async () => {
    const load = jest.fn(async () => 'v1');
    expect(await readThrough(near, 'mlp', 'a:production', text, load)).toBe('v1');
    const redisReads = shared.stats.hits + shared.stats.misses;
    expect(await readThrough(near, 'mlp', 'a:production', text, load)).toBe('v1');
    expect(load).toHaveBeenCalledTimes(1);
    expect(shared.stats.hits + shared.stats.misses).toBe(redisReads);
    expect(near.stats).toMatchObject({ nearHits: 1, hits: 1, misses: 1 });
  });

  it('drops a model when another process publishes a change to it, and keeps other models', async () => {
    await readThrough(near, 'mlp', 'a:production', text, async () => 'v1');
    await readThrough(near, 'other', 'model', text, async () => 'o1');
    expect(near.size).toBe(2);
    await writeElsewhere('mlp');
    await waitFor(() => near.size === 1, { description: 'the change event dropped the entry' });
    expect(await readThrough(near, 'mlp', 'a:production', text, async () => 'v2')).toBe('v2');
    expect(await readThrough(near, 'other', 'model', text, async () => 'o2')).toBe('o1');
  });

  it('never answers from memory a value another process changed, even before its change event arrives', async () => {
    await readThrough(near, 'mlp', 'a:production', text, async () => 'v1');
    // The write is acknowledged while its event still sits in Redis's output buffer (seen under CPU contention).
    await other.invalidate('mlp');
    expect(await readThrough(near, 'mlp', 'a:production', text, async () => 'v2')).toBe('v2');
    expect(await readThrough(near, 'mlp', 'a:production', text, async () => 'v3')).toBe('v2');
    expect(near.stats.nearHits).toBe(1);
  });

  it('peeks at a held value at once and confirms it by a generation read sent after the peek', async () => {
    expect(near.peek('mlp', 'a:production')).toBeUndefined();
    await readThrough(near, 'mlp', 'a:production', text, async () => 'v1');
    const held = near.peek('mlp', 'a:production')!;
    expect(held.value).toBe('v1');
    await expect(held.current).resolves.toBe(true);
    // A write acknowledged before the peek, its event not yet here: memory still offers the old value, and says it is not current.
    await other.invalidate('mlp');
    const stale = near.peek('mlp', 'a:production')!;
    expect(stale.value).toBe('v1');
    await expect(stale.current).resolves.toBe(false);
    expect(near.peek('mlp', 'a:production')).toBeUndefined();
    expect(await readThrough(near, 'mlp', 'a:production', text, async () => 'v2')).toBe('v2');
  });

  it('never reuses a generation, so a read from before a Redis restart cannot store after a write that follows it', async () => {
    await other.invalidate('mlp');
    const before = await shared.get('mlp', 'a:production');
    await redis.kill();
    await redis.restart();
    await Promise.all([shared.ready(10_000), other.ready(10_000)]);
    await waitFor(async () => (await other.generation('mlp')) !== undefined, { timeoutMs: 10_000, description: 'Redis answers again' });
    await other.invalidate('mlp'); // the first write after the restart
    await shared.set('mlp', 'a:production', 'stale', before.generation);
    expect((await shared.get('mlp', 'a:production')).value).toBeUndefined();
  });

  it('sees a local invalidate at once', async () => {
    await readThrough(near, 'mlp', 'a:production', text, async () => 'v1');
    await near.invalidate('mlp');
    expect(await readThrough(near, 'mlp', 'a:production', text, async () => 'v2')).toBe('v2');
  });

  it('does not keep a value loaded before a change event arrived', async () => {
    const staleRead = await near.get('mlp', 'a:production');
    near.forget('mlp'); // the event of a write that landed while the stale load ran
    await near.set('mlp', 'a:production', 'stale', staleRead.generation);
    expect(near.size).toBe(0);
  });

  it('bypasses memory while the bus is down and starts empty when it is back', async () => {
    await readThrough(near, 'mlp', 'a:production', text, async () => 'v1');
    await redis.kill();
    await waitFor(() => !bus.live, { description: 'bus noticed Redis is gone' });
    // Redis is gone: the read is a miss and goes to the loader (the registry), never to a possibly stale memory.
    expect(await readThrough(near, 'mlp', 'a:production', text, async () => 'from-store')).toBe('from-store');
    expect(near.size).toBe(0);
    await redis.restart();
    await waitFor(() => bus.live, { timeoutMs: 10_000, description: 'bus resubscribed' });
    await shared.ready();
    expect(await readThrough(near, 'mlp', 'a:production', text, async () => 'v3')).toBe('v3');
    expect(await readThrough(near, 'mlp', 'a:production', text, async () => 'v4')).toBe('v3');
    expect(near.stats.nearHits).toBeGreaterThanOrEqual(1);
  });

  it('expires entries after ttlMs and holds at most maxEntries', async () => {
    const short = new NearMetadataCache(shared, bus, { ttlMs: 1, maxEntries: 2 });
    await readThrough(short, 'a', 'model', text, async () => 'a1');
    await readThrough(short, 'b', 'model', text, async () => 'b1');
    await readThrough(short, 'c', 'model', text, async () => 'c1');
    expect(short.size).toBe(2);
    const stored = Date.now();
    await waitFor(() => Date.now() > stored + 2, { description: 'the entries are past their 1 ms lifetime' });
    await short.get('c', 'model');
    expect(short.stats.nearHits).toBe(0);
  });
});
