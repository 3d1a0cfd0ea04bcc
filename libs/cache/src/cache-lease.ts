import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { ChangeBus } from './change-bus';

/**
 * How long a near-cache lease lasts, in ms. A holder trusts its memory
 * without reading the model's generation until this long after it sent the
 * renewal, less {@link LEASE_MARGIN_MS}; Redis keeps the lease this long
 * after it took the renewal, which is later. So when a writer finds a lease
 * gone, its holder has already stopped trusting its memory.
 */
export const LEASE_MS = 1000;
/** Taken off a holder's own view of its lease, for timer and clock-rate slack. */
export const LEASE_MARGIN_MS = 50;
/** Longest a writer waits for the holders of a write to acknowledge it before it gives up on them (and says so). */
export const LEASE_WAIT_CAP_MS = 2 * LEASE_MS + 500;

const PREFIX = 'maas:lease:';
/** The set of holder ids that may hold a lease now. */
const HOLDERS = `${PREFIX}holders`;
/** One holder's lease: exists while the lease does. */
const HOLDER_PREFIX = `${PREFIX}h:`;
const holderKey = (id: string) => `${HOLDER_PREFIX}${id}`;
/** The holders that have dropped what one write changed. */
const ackKey = (writeId: string) => `${PREFIX}ack:${writeId}`;
/** How long an acknowledgement set is kept, in ms: the writer reads it within its wait. */
const ACK_TTL_MS = 4 * LEASE_MS + 1000;

// Grants or extends a lease, and lists its holder where writers look.
const RENEW = `
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return 1`;

// Records that a holder has dropped what a write changed.
const ACK = `
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

// Of the listed holders (or the given ones, after the first look), those with a live lease that have not
// acknowledged the write; holders whose lease is gone are delisted (a renewal lists its holder again
// atomically with the grant).
const UNACKED_HOLDERS = `
local ids = ARGV
local first = 2
if #ARGV == 1 then
  ids = redis.call('SMEMBERS', KEYS[1])
  first = 1
end
local waiting = {}
for i = first, #ids do
  local id = ids[i]
  if redis.call('EXISTS', ARGV[1] .. id) == 0 then
    redis.call('SREM', KEYS[1], id)
  elseif redis.call('SISMEMBER', KEYS[2], id) == 0 then
    table.insert(waiting, id)
  end
end
return waiting`;

/** Options of {@link CacheLease}. */
export interface CacheLeaseOptions {
  /** A monotonic clock in ms (it keeps running while the process is stopped). @default performance.now */
  now?: () => number;
  logger?: Logger;
}

/**
 * The holder's side of the near-cache lease protocol: while it holds a lease
 * its process may answer from memory without reading the model's generation
 * in Redis, because no registry write is acknowledged before every holder of
 * a live lease has dropped what it changed ({@link LeaseWaiter}).
 *
 * - A lease is renewed four times per lease length, only while the change bus
 *   is live (a holder that may be missing events lets its lease run out).
 * - A renewal counts only once the bus has delivered everything published
 *   before it ({@link ChangeBus.sync}): a writer that listed the holders before
 *   this renewal did not wait for this holder, and its event must be in first.
 * - The holder acknowledges each write it is told of after its cache has
 *   dropped the model ({@link ack}).
 * - It is trusted only while every writer heard on the bus waits for lease
 *   holders (an older registry, during a rolling upgrade, does not).
 * - Its own view of the lease ends before Redis's, measured on a monotonic
 *   clock from when the renewal was sent, so a process resumed after a freeze
 *   (SIGSTOP, a long pause) finds it over and reads generations again.
 */
export class CacheLease {
  readonly id = randomBytes(9).toString('base64url');
  /** Monotonic ms before which memory may be trusted. */
  private until = 0;
  /** Renewals are skipped before this (after an acknowledgement failed: let the lease run out). */
  private pausedUntil = 0;
  private renewing = false;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private readonly now: () => number;
  /** Renewals that took effect, for tests and metrics. */
  renewals = 0;

  constructor(
    private readonly redis: Redis,
    private readonly bus: ChangeBus,
    private readonly options: CacheLeaseOptions = {},
  ) {
    this.now = options.now ?? (() => performance.now());
  }

  /** Starts renewing. */
  start(): void {
    if (this.timer || this.stopped) return;
    void this.renew();
    this.timer = setInterval(() => void this.renew(), LEASE_MS / 4);
    this.timer.unref();
  }

  /** Whether memory may be answered from without reading the model's generation. */
  trusted(): boolean {
    return this.now() < this.until && this.bus.live && this.bus.writersAwaitLeases;
  }

  /** Acknowledges a write once the cache has dropped what it changed. */
  ack(writeId: string): void {
    if (!writeId || this.stopped) return;
    this.redis.eval(ACK, 1, ackKey(writeId), this.id, String(ACK_TTL_MS)).catch((err: unknown) => {
      // The writer waits for this lease to run out instead: stop trusting and renewing until it has.
      this.until = 0;
      this.pausedUntil = this.now() + LEASE_MS;
      this.options.logger?.warn({ err: (err as Error).message, writeId }, 'could not acknowledge a registry write; reading generations until the lease has run out');
    });
  }

  /** Drops the lease: memory is no longer trusted, and writers stop waiting for this holder. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.until = 0;
    clearInterval(this.timer);
    try {
      await this.redis.multi().del(holderKey(this.id)).srem(HOLDERS, this.id).exec();
    } catch {
      // It runs out by itself.
    }
  }

  /**
   * Drops trust at once, as the change bus goes down or comes back. Going
   * down, the holder also gives the lease up and renews none for a lease
   * length: it may miss the event of a write published meanwhile and so never
   * acknowledge it, and its writer then waits on this holder only until the
   * lease key is gone (at once when Redis takes the delete; else once the
   * last grant runs out, which no renewal extends), not for its whole cap.
   */
  lapse(live = false): void {
    this.until = 0;
    if (live || this.stopped) return;
    this.pausedUntil = this.now() + LEASE_MS;
    // On the connection the renewals use, so it lands after any renewal still in flight.
    this.redis.del(holderKey(this.id)).catch(() => undefined);
  }

  private async renew(): Promise<void> {
    if (this.renewing || this.stopped) return;
    const sent = this.now();
    if (sent < this.pausedUntil) return;
    if (!this.bus.live) {
      this.until = 0;
      return;
    }
    this.renewing = true;
    try {
      await this.redis.eval(RENEW, 2, holderKey(this.id), HOLDERS, this.id, String(LEASE_MS));
      if (this.stopped || sent < this.pausedUntil) return;
      // Trusted only once every event published before the grant has been received (and applied).
      if (!(await this.bus.sync()) || this.stopped || sent < this.pausedUntil) return;
      this.until = Math.max(this.until, sent + LEASE_MS - LEASE_MARGIN_MS);
      this.renewals += 1;
    } catch {
      // Not renewed: the lease runs out on its own, and memory is checked against generations meanwhile.
    } finally {
      this.renewing = false;
    }
  }
}

/** A write id no other write uses. */
export function newWriteId(): string {
  return randomBytes(12).toString('base64url');
}

/** Options of {@link LeaseWaiter}. */
export interface LeaseWaiterOptions {
  logger?: Logger;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The writer's side of the near-cache lease protocol (the registry): after a
 * write has moved the model's generation on and published its change event,
 * {@link settle} returns only once every holder of a live lease has
 * acknowledged it or lost its lease.
 */
export class LeaseWaiter {
  /** Writes that waited for a holder's lease to run out (or could not read the holders). */
  readonly stats = { waitedOut: 0 };

  constructor(
    private readonly redis: Redis,
    private readonly options: LeaseWaiterOptions = {},
  ) {}

  /** Waits until the write `writeId` may be acknowledged to its caller. */
  async settle(writeId: string): Promise<void> {
    const started = Date.now();
    try {
      await this.waitOutRestart();
      const unacked = (ids: string[]) => this.redis.eval(UNACKED_HOLDERS, 2, HOLDERS, ackKey(writeId), HOLDER_PREFIX, ...ids) as Promise<string[]>;
      let waiting = await unacked([]);
      const listed = waiting;
      let pause = 1;
      while (waiting.length > 0) {
        if (Date.now() - started > LEASE_WAIT_CAP_MS) {
          this.stats.waitedOut += 1;
          this.options.logger?.warn({ writeId, holders: waiting }, 'near-cache lease holders neither acknowledged a write nor let their lease run out; acknowledging it anyway');
          return;
        }
        await sleep(pause);
        pause = Math.min(pause * 2, 16);
        waiting = await unacked(waiting);
      }
      // A listed holder that never acknowledged had its lease run out.
      if (listed.length > 0) {
        const acked = await this.redis.smismember(ackKey(writeId), ...listed).catch(() => [0]);
        if (acked.includes(0)) this.stats.waitedOut += 1;
      }
    } catch (err) {
      this.stats.waitedOut += 1;
      // The holders cannot be read: wait until any lease granted before now has run out.
      this.options.logger?.warn({ err: (err as Error).message, writeId }, 'cannot read near-cache lease holders; waiting for every lease to run out');
      await sleep(LEASE_MS + LEASE_MARGIN_MS);
    }
  }

  /**
   * A Redis that restarted has forgotten the leases the last one granted,
   * which their holders may still trust: a write waits until the new one has
   * been up longer than a lease.
   */
  private async waitOutRestart(): Promise<void> {
    const info = await this.redis.info('server');
    const match = /uptime_in_seconds:(\d+)/.exec(info);
    if (!match) return;
    // uptime_in_seconds is whole seconds: one more covers the part not counted.
    const upMs = Number(match[1]) * 1000;
    const left = LEASE_MS + 1000 - upMs;
    if (left > 0) await sleep(left);
  }
}
