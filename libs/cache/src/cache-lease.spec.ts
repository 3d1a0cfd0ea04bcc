import { ModelChangeEvent_Kind, type ModelChangeEvent } from '@maas/proto';
import { startRedis, waitFor, type TestRedis } from '@maas/testing';
import { CacheLease, LEASE_MARGIN_MS, LEASE_MS, LeaseWaiter, newWriteId } from './cache-lease';
import { NearMetadataCache } from './cache-near';
import { RedisMetadataCache } from './cache-redis';
import { readThrough as loadThrough } from './cached-metadata';
import { CHANGE_CHANNEL, HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS, RedisChangeBus, type ChangeBus, type ChangeListener } from './change-bus';

/**
 * A bus whose deliveries can be held back, as a gateway's would be while its
 * process is busy or its subscriber connection lags: events (and syncs) wait
 * until released.
 */
class HeldBus implements ChangeBus {
  held = false;
  /** Cut off (see {@link blip}): not live, and events published meanwhile are lost, as on a dropped subscriber connection. */
  private cut = false;
  private readonly queue: ModelChangeEvent[] = [];
  private readonly listeners = new Set<ChangeListener>();
  private readonly liveListeners = new Set<(live: boolean) => void>();
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly inner: RedisChangeBus) {
    inner.subscribe((event) => {
      if (this.cut) return;
      if (this.held) this.queue.push(event);
      else this.listeners.forEach((listener) => listener(event));
    });
    inner.onLiveChange((live) => this.liveListeners.forEach((listener) => listener(live)));
  }

  /** Goes down, runs `meanwhile` (whose events are lost), and comes back. */
  async blip(meanwhile: () => Promise<void>): Promise<void> {
    this.cut = true;
    this.liveListeners.forEach((listener) => listener(false));
    try {
      await meanwhile();
    } finally {
      this.cut = false;
      this.liveListeners.forEach((listener) => listener(true));
    }
  }

  get live(): boolean {
    return !this.cut && this.inner.live;
  }
  get writersAwaitLeases(): boolean {
    return this.inner.writersAwaitLeases;
  }
  publish(event: ModelChangeEvent): Promise<void> {
    return this.inner.publish(event);
  }
  subscribe(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  onLiveChange(listener: (live: boolean) => void): () => void {
    this.liveListeners.add(listener);
    return () => this.liveListeners.delete(listener);
  }
  async sync(): Promise<boolean> {
    const synced = await this.inner.sync();
    if (this.held) await new Promise<void>((resolve) => this.waiting.push(resolve));
    return synced;
  }
  get syncsWaiting(): number {
    return this.waiting.length;
  }
  release(): void {
    this.held = false;
    for (const event of this.queue.splice(0)) this.listeners.forEach((listener) => listener(event));
    this.waiting.splice(0).forEach((resolve) => resolve());
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
}

const text = { encode: (v: string) => v, decode: (s: string) => s };

describe('near-cache leases: hits without generation reads, writes acknowledged after every holder dropped them', () => {
  let redis: TestRedis;
  const closers: Array<() => Promise<void>> = [];
  let writerCache: RedisMetadataCache;
  let writerBus: RedisChangeBus;
  let waiter: LeaseWaiter;

  beforeAll(async () => {
    redis = await startRedis();
    writerCache = new RedisMetadataCache({ url: redis.url });
    // The registry's bus: its heartbeats tell holders that writes wait for them.
    writerBus = new RedisChangeBus({ url: redis.url, heartbeatMs: HEARTBEAT_MS });
    await writerCache.ready();
    waiter = new LeaseWaiter(writerCache.redis);
  });
  afterEach(async () => {
    await Promise.all(closers.splice(0).map((close) => close()));
  });
  afterAll(async () => {
    await Promise.all([writerCache.shutdown(), writerBus.shutdown()]);
    await redis.stop();
  });

  /** A gateway's cache: a near layer over its own Redis connection and bus, with a lease. */
  async function holder(options: { now?: () => number } = {}) {
    const inner = new RedisChangeBus({ url: redis.url });
    const bus = new HeldBus(inner);
    const shared = new RedisMetadataCache({ url: redis.url });
    await Promise.all([shared.ready(), inner.ready()]);
    await waitFor(() => inner.live, { description: 'bus subscribed' });
    const lease = new CacheLease(shared.redis, bus, options);
    const near = new NearMetadataCache(shared, bus, { ttlMs: 60_000, lease });
    lease.start();
    closers.push(async () => {
      await near.shutdown();
      await inner.shutdown();
    });
    return { near, lease, bus, shared };
  }

  /** What the registry does on a write: new generation, event, then the wait for the lease holders. */
  async function write(model: string): Promise<void> {
    await writerCache.invalidate(model);
    const writeId = newWriteId();
    await writerBus.publish({ kind: ModelChangeEvent_Kind.KIND_ALIAS_SET, model, version: 2, alias: 'production', time: new Date(), writeId });
    await waiter.settle(writeId);
  }

  it('waits after a Redis restart until no lease the last Redis granted can be trusted', async () => {
    // This Redis has just started: a holder of the one before it may still trust its lease.
    const started = Date.now();
    await waiter.settle(newWriteId());
    expect(Date.now() - started).toBeGreaterThanOrEqual(LEASE_MS - 100);
    // Once it has been up longer than a lease, a write with no holders waits for nothing.
    const again = Date.now();
    await waiter.settle(newWriteId());
    expect(Date.now() - again).toBeLessThan(LEASE_MS / 2);
  });

  it('answers hits from memory with no generation read while the lease holds', async () => {
    const { near, lease, shared } = await holder();
    await readThrough(near, 'm1', 'alias', 'v1');
    await waitFor(() => lease.trusted(), { description: 'lease granted' });
    const reads = jest.spyOn(shared, 'generation');
    for (let i = 0; i < 20; i++) {
      const held = near.peek('m1', 'alias');
      expect(held?.value).toBe('v1');
      expect(await held!.current).toBe(true);
    }
    expect(reads).not.toHaveBeenCalled();
    expect(near.stats.nearHits).toBe(20);
  });

  it('acknowledges a write only once every holder has dropped what it changed', async () => {
    const a = await holder();
    const b = await holder();
    for (const h of [a, b]) {
      await readThrough(h.near, 'm2', 'alias', 'v1');
      await waitFor(() => h.lease.trusted(), { description: 'lease granted' });
    }
    // B is slow to hear of the write: its event is held back.
    b.bus.held = true;
    let acknowledged = false;
    const writing = write('m2').then(() => (acknowledged = true));
    await waitFor(() => a.near.peek('m2', 'alias') === undefined, { description: 'A dropped the entry' });
    // While B's lease is live in Redis and B still holds the old entry, the write must not be acknowledged.
    const key = `maas:lease:h:${b.lease.id}`;
    await waitFor(async () => {
      const left = await writerCache.redis.pttl(key);
      return left > 0 && left < LEASE_MS - 300;
    }, { description: "B's lease 300 ms on, still live", intervalMs: 5 });
    expect(b.near.peek('m2', 'alias')?.value).toBe('v1');
    expect(acknowledged).toBe(false);
    const waitedOut = waiter.stats.waitedOut;
    b.bus.release();
    await writing;
    expect(waiter.stats.waitedOut).toBe(waitedOut);
    expect(b.near.peek('m2', 'alias')).toBeUndefined();
    expect(a.near.peek('m2', 'alias')).toBeUndefined();
  });

  it('a holder that stopped answering holds a write up only until its lease runs out', async () => {
    // A frozen gateway's lease, as Redis sees it: listed, live, never acknowledging.
    const frozen = 'frozen-holder';
    await writerCache.redis.multi().set(`maas:lease:h:${frozen}`, '1', 'PX', LEASE_MS).sadd('maas:lease:holders', frozen).exec();
    const started = Date.now();
    const waitedOut = waiter.stats.waitedOut;
    await write('m3');
    expect(waiter.stats.waitedOut).toBe(waitedOut + 1);
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(LEASE_MS - 100);
    expect(waited).toBeLessThan(2 * LEASE_MS);
  });

  it('a holder that missed a write while its bus was down for less than a lease does not hold the write up', async () => {
    const { near, lease, bus } = await holder();
    await readThrough(near, 'm8', 'alias', 'v1');
    await waitFor(() => lease.trusted(), { description: 'lease granted' });
    const waitedOut = waiter.stats.waitedOut;
    let waited = 0;
    // The bus comes back at once, but the write's event is lost: the holder can never acknowledge it.
    await bus.blip(async () => {
      const started = Date.now();
      await write('m8');
      waited = Date.now() - started;
    });
    // Given up as the bus went down: the write waits on nobody (it waited its whole 2.5 s cap before).
    expect(waited).toBeLessThan(LEASE_MS / 2);
    expect(waiter.stats.waitedOut).toBe(waitedOut);
    // Emptied on the blip, and trusted again once renewed after a lease length.
    expect(near.peek('m8', 'alias')).toBeUndefined();
    expect(lease.trusted()).toBe(false);
    const back = Date.now();
    await waitFor(() => lease.trusted(), { description: 'lease granted again' });
    expect(Date.now() - back).toBeGreaterThanOrEqual(LEASE_MS - 100);
  });

  it('a holder that stops lets writers go at once', async () => {
    const { lease } = await holder();
    await waitFor(() => lease.trusted(), { description: 'lease granted' });
    await lease.stop();
    const started = Date.now();
    await write('m4');
    expect(Date.now() - started).toBeLessThan(LEASE_MS / 2);
  });

  it("ends trust on the holder's own clock, before Redis lets the lease go", async () => {
    let clock = 0;
    const { near, lease, shared } = await holder({ now: () => clock });
    await readThrough(near, 'm5', 'alias', 'v1');
    await waitFor(() => lease.trusted(), { description: 'lease granted' });
    // Resumed after a freeze as long as a lease: nothing is trusted until a renewal sent now comes back.
    clock += LEASE_MS - LEASE_MARGIN_MS;
    expect(lease.trusted()).toBe(false);
    const reads = jest.spyOn(shared, 'generation');
    const held = near.peek('m5', 'alias');
    expect(await held!.current).toBe(true);
    expect(reads).toHaveBeenCalledTimes(1);
  });

  it('is not trusted while a writer that does not wait for lease holders is heard (a rolling upgrade)', async () => {
    const { lease, near, shared } = await holder();
    await readThrough(near, 'm7', 'alias', 'v1');
    await waitFor(() => lease.trusted(), { description: 'lease granted' });
    // An older registry's heartbeat: it acknowledges writes without waiting for anyone.
    const older = setInterval(() => void writerCache.redis.publish(CHANGE_CHANNEL, JSON.stringify({ heartbeat: Date.now() })), HEARTBEAT_MS);
    try {
      await waitFor(() => !lease.trusted(), { description: 'trust withdrawn' });
      const reads = jest.spyOn(shared, 'generation');
      expect(await near.peek('m7', 'alias')!.current).toBe(true);
      expect(reads).toHaveBeenCalledTimes(1);
    } finally {
      clearInterval(older);
    }
    const gone = Date.now();
    await waitFor(() => lease.trusted(), { description: 'trust back once the older writer is gone' });
    expect(Date.now() - gone).toBeGreaterThanOrEqual(HEARTBEAT_TIMEOUT_MS - HEARTBEAT_MS - 50);
  });

  it('trusts a renewal only once the events published before it have been received', async () => {
    const { near, lease, bus } = await holder();
    await readThrough(near, 'm6', 'alias', 'v1');
    await waitFor(() => lease.trusted(), { description: 'lease granted' });
    bus.held = true;
    // The write's event is on its way while the lease lapses and is granted again.
    await writerCache.invalidate('m6');
    await writerBus.publish({ kind: ModelChangeEvent_Kind.KIND_ALIAS_SET, model: 'm6', version: 2, alias: 'production', time: new Date(), writeId: newWriteId() });
    lease.lapse();
    const renewals = lease.renewals;
    expect(lease.trusted()).toBe(false);
    // A renewal is granted by Redis, but does not count while the event is held back.
    await waitFor(() => bus.syncsWaiting > 0, { description: 'a renewal waiting for the bus' });
    expect(lease.trusted()).toBe(false);
    expect(lease.renewals).toBe(renewals);
    bus.release();
    await waitFor(() => lease.trusted(), { description: 'lease trusted after the event' });
    expect(near.peek('m6', 'alias')).toBeUndefined();
  });
});

/** Loads a value through the near cache, as a gateway's resolution does on a miss. */
async function readThrough(near: NearMetadataCache, model: string, field: string, value: string): Promise<void> {
  await loadThrough(near, model, field, text, async () => value);
}
