import type { Logger } from 'pino';
import { MemoryMetadataCache } from './cache-memory';
import { RedisMetadataCache } from './cache-redis';
import { MemoryChangeBus, RedisChangeBus, type ChangeBus } from './change-bus';
import type { MetadataCache } from './metadata-cache';

/** Redis-backed when `redisUrl` is set, else in this process's memory. */
export function createMetadataCache(options: { redisUrl?: string; ttlSeconds?: number; logger?: Logger }): MetadataCache {
  return options.redisUrl
    ? new RedisMetadataCache({ url: options.redisUrl, ttlSeconds: options.ttlSeconds, logger: options.logger })
    : new MemoryMetadataCache({ ttlSeconds: options.ttlSeconds });
}

/** Redis pub/sub when `redisUrl` is set, else an in-process bus. */
export function createChangeBus(options: { redisUrl?: string; logger?: Logger }): ChangeBus {
  return options.redisUrl ? new RedisChangeBus({ url: options.redisUrl, logger: options.logger }) : new MemoryChangeBus();
}
