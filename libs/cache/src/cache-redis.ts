import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { CacheRead, CacheStats, MetadataCache, MetadataCacheOptions } from './metadata-cache';

/** Options of {@link RedisMetadataCache}. */
export interface RedisMetadataCacheOptions extends MetadataCacheOptions {
  /** `redis://host:port[/db]`. */
  url: string;
  /** Key prefix. @default 'maas:meta:' */
  prefix?: string;
  /** Longest wait for one command before it counts as a miss. @default 250 */
  commandTimeoutMs?: number;
  /**
   * How long an invalidation that could not reach Redis waits for this
   * process's connection to come back and retries before the write goes on.
   * Other processes may reach Redis again sooner (each reconnects on its own
   * backoff) and must not read there what the write replaced. @default 5000
   */
  invalidateWaitMs?: number;
  logger?: Logger;
}

// Stores a field only if the model's generation is unchanged since the read.
const SET_IF_GENERATION = `
local current = redis.call('HGET', KEYS[1], 'gen') or ''
if current ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1`;

// Drops every field and sets a new generation. The writer makes each one unique: a counter kept in
// Redis would start again after a Redis restart, and a reader still holding the old value would match.
const INVALIDATE = `
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'gen', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1`;

let generations = 0;
const processTag = randomBytes(6).toString('base64url');

/** A generation no writer, in this process or another, before or after a Redis restart, has used. */
function uniqueGeneration(): string {
  generations += 1;
  return `${Date.now().toString(36)}.${processTag}.${generations.toString(36)}`;
}

/**
 * {@link MetadataCache} in Redis: one hash per model holding its fields and
 * generation. Redis being down makes reads misses and writes no-ops, never
 * errors: commands fail fast (no offline queue, bounded timeout) while the
 * client reconnects in the background. Invalidations that could not reach
 * Redis are replayed when it is back.
 */
export class RedisMetadataCache implements MetadataCache {
  readonly stats: CacheStats = { hits: 0, misses: 0, errors: 0 };
  readonly redis: Redis;
  private readonly prefix: string;
  private readonly ttlSeconds: number;
  private readonly pendingInvalidations = new Set<string>();
  private lastErrorLog = 0;

  constructor(private readonly options: RedisMetadataCacheOptions) {
    this.prefix = options.prefix ?? 'maas:meta:';
    this.ttlSeconds = options.ttlSeconds ?? 300;
    this.redis = new Redis(options.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 250,
      connectTimeout: 2000,
      // Reconnect at least twice a second: a writer whose connection lags its readers' after a Redis
      // restart holds its writes (see invalidateWaitMs) until it is back.
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 500),
    });
    this.redis.on('error', (err) => this.noteError(err));
    this.redis.on('ready', () => void this.replayInvalidations());
  }

  /**
   * Resolves once connected, or after `timeoutMs` if Redis is not reachable
   * (then the cache starts degraded and recovers by itself). Never rejects.
   */
  async ready(timeoutMs = 2000): Promise<boolean> {
    if (this.redis.status === 'ready') return true;
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.redis.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      this.redis.on('ready', onReady);
    });
  }

  async get(model: string, field: string): Promise<CacheRead> {
    try {
      const [value, generation] = await this.redis.hmget(this.key(model), field, 'gen');
      if (value !== null) {
        this.stats.hits += 1;
        return { value, generation: generation ?? '' };
      }
      this.stats.misses += 1;
      return { generation: generation ?? '' };
    } catch (err) {
      this.noteError(err);
      this.stats.misses += 1;
      // A generation nothing can match: what is loaded now is not stored.
      return { generation: 'unreachable' };
    }
  }

  async set(model: string, field: string, value: string, generation: string): Promise<void> {
    if (generation === 'unreachable') return;
    try {
      await this.redis.eval(SET_IF_GENERATION, 1, this.key(model), generation, field, value, String(this.ttlSeconds));
    } catch (err) {
      this.noteError(err);
    }
  }

  async invalidate(model: string): Promise<void> {
    if (await this.tryInvalidate(model)) return;
    this.pendingInvalidations.add(model);
    // After a Redis restart a reader's connection can be back before ours: hold the write until the
    // invalidation is in, or until we have waited long enough that Redis is down for everyone.
    if (this.redis.status !== 'ready' && (await this.ready(this.options.invalidateWaitMs ?? 5000)) && (await this.tryInvalidate(model))) {
      this.pendingInvalidations.delete(model);
    }
  }

  async generation(model: string): Promise<string | undefined> {
    try {
      return (await this.redis.hget(this.key(model), 'gen')) ?? '';
    } catch (err) {
      this.noteError(err);
      return undefined;
    }
  }

  private async tryInvalidate(model: string): Promise<boolean> {
    try {
      await this.redis.eval(INVALIDATE, 1, this.key(model), String(this.ttlSeconds), uniqueGeneration());
      this.pendingInvalidations.delete(model);
      return true;
    } catch (err) {
      this.noteError(err);
      return false;
    }
  }

  async shutdown(): Promise<void> {
    this.redis.disconnect(false);
  }

  private key(model: string): string {
    return `${this.prefix}${model}`;
  }

  private async replayInvalidations(): Promise<void> {
    for (const model of [...this.pendingInvalidations]) await this.invalidate(model);
  }

  private noteError(err: unknown): void {
    this.stats.errors += 1;
    const now = Date.now();
    if (now - this.lastErrorLog > 5000) {
      this.lastErrorLog = now;
      this.options.logger?.warn({ err: (err as Error).message }, 'redis cache unavailable; reading from the store');
    }
  }
}
