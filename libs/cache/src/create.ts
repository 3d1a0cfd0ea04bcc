import type { Logger } from 'pino';
import { MemoryMetadataCache } from './cache-memory';
import { CacheLease } from './cache-lease';
import { NearMetadataCache } from './cache-near';
import { RedisMetadataCache } from './cache-redis';
import { HEARTBEAT_MS, HEARTBEAT_TIMEOUT_MS, SETTLE_MS, MemoryChangeBus, RedisChangeBus, type ChangeBus } from './change-bus';
import type { MetadataCache } from './metadata-cache';

/**
 * Redis-backed when `redisUrl` is set, else in this process's memory. With
 * Redis, a `near` bus and a positive `near.ttlMs`, an in-process layer sits
 * over Redis, kept coherent by the bus ({@link NearMetadataCache}); with
 * `near.lease` it holds a lease on its memory ({@link CacheLease}) and
 * answers hits without reading generations while the lease holds.
 */
export function createMetadataCache(options: {
  redisUrl?: string;
  ttlSeconds?: number;
  logger?: Logger;
  near?: { bus: ChangeBus; ttlMs: number; lease?: boolean };
}): MetadataCache {
  if (!options.redisUrl) return new MemoryMetadataCache({ ttlSeconds: options.ttlSeconds });
  const redis = new RedisMetadataCache({ url: options.redisUrl, ttlSeconds: options.ttlSeconds, logger: options.logger });
  const nearOn = options.near && options.near.ttlMs > 0 && (options.ttlSeconds ?? 300) > 0;
  if (!nearOn) return redis;
  const { bus, ttlMs } = options.near!;
  const lease = options.near!.lease ? new CacheLease(redis.redis, bus, { logger: options.logger }) : undefined;
  lease?.start();
  return new NearMetadataCache(redis, bus, { ttlMs, lease });
}

/** The Redis cache under a cache built by {@link createMetadataCache}, if any. */
export function redisLayerOf(cache: MetadataCache): RedisMetadataCache | undefined {
  if (cache instanceof RedisMetadataCache) return cache;
  return cache instanceof NearMetadataCache ? redisLayerOf(cache.shared) : undefined;
}

/**
 * Redis pub/sub when `redisUrl` is set, else an in-process bus. The `writer`
 * (the registry) sends heartbeats; a `reader` (gateway, node) counts the bus
 * live only while they arrive.
 */
export function createChangeBus(options: { redisUrl?: string; logger?: Logger; role: 'writer' | 'reader' }): ChangeBus {
  if (!options.redisUrl) return new MemoryChangeBus();
  const side = options.role === 'writer' ? { heartbeatMs: HEARTBEAT_MS } : { requireHeartbeatMs: HEARTBEAT_TIMEOUT_MS, settleMs: SETTLE_MS };
  return new RedisChangeBus({ url: options.redisUrl, logger: options.logger, ...side });
}
