import { createChangeBus, createMetadataCache, LeaseWaiter, NearMetadataCache, redisLayerOf, type ChangeBus, type MetadataCache } from '@maas/cache';
import { createMetricsRegistry, rpcInterceptor, RpcMetrics, leaseMetrics, totalCounter, silentLogger, startMetricsServer, type Logger, type MetricsServer } from '@maas/observability';
import { RegistryServiceService } from '@maas/proto';
import { GrpcServer, serverCredentials, tlsFilesOf } from '@maas/rpc';
import type { RegistryConfig } from './config';
import { FsModelStore } from './model-store-fs';
import { Registry } from './registry';
import { RegistryService } from './registry-service';

/** Collaborators built outside, by main.ts or a test. */
export interface RegistryDeps {
  logger?: Logger;
  /** Replaces the cache built from `redisUrl`. */
  cache?: MetadataCache;
  /** Replaces the change bus built from `redisUrl`. */
  bus?: ChangeBus;
}

/** A running registry. */
export interface RegistryApp {
  port: number;
  /** `host:port` it listens on. */
  address: string;
  registry: Registry;
  cache: MetadataCache;
  metricsPort?: number;
  /** Stops serving (in-flight calls get `graceMs`), then closes the cache, bus and store. */
  shutdown(graceMs?: number): Promise<void>;
}

/** Builds the registry from its configuration and starts serving. */
export async function startRegistry(config: RegistryConfig, deps: RegistryDeps = {}): Promise<RegistryApp> {
  const logger = deps.logger ?? silentLogger();
  const credentials = serverCredentials(tlsFilesOf(config));
  const store = await FsModelStore.open(config.dataDir);
  const bus = deps.bus ?? createChangeBus({ redisUrl: config.redisUrl || undefined, logger, role: 'writer' });
  const cache =
    deps.cache ??
    createMetadataCache({ redisUrl: config.redisUrl || undefined, ttlSeconds: config.cacheTtlSeconds, logger, near: { bus, ttlMs: config.cacheNearTtlMs, lease: config.cacheLease === 'on' } });
  const redisCache = redisLayerOf(cache);
  if (redisCache && !(await redisCache.ready())) {
    logger.warn({ redisUrl: config.redisUrl }, 'redis is not reachable; serving from the store until it is');
  }
  // Gateways (and this registry) may hold leases on their memory of this Redis: writes wait for them.
  const leases = redisCache ? new LeaseWaiter(redisCache.redis, { logger }) : undefined;
  const registry = new Registry(store, cache, bus, {
    maxUploadBytes: config.maxUploadBytes,
    verifyWithOnnxruntimeMaxBytes: config.verifyMaxBytes,
    leases,
    logger,
  });
  const metricsRegistry = createMetricsRegistry('registry', { defaultMetrics: config.metricsPort >= 0 });
  const rpcMetrics = new RpcMetrics(metricsRegistry);
  totalCounter(metricsRegistry, 'maas_cache_hits_total', 'Metadata cache hits', () => cache.stats.hits);
  totalCounter(metricsRegistry, 'maas_cache_misses_total', 'Metadata cache misses (read from the store)', () => cache.stats.misses);
  if (cache instanceof NearMetadataCache) {
    const near = cache;
    totalCounter(metricsRegistry, 'maas_cache_near_hits_total', 'Metadata cache hits answered from process memory (included in the hits)', () => near.stats.nearHits);
    if (near.lease) leaseMetrics(metricsRegistry, near.lease);
  }
  totalCounter(metricsRegistry, 'maas_cache_errors_total', 'Metadata cache operations that failed (Redis unreachable)', () => cache.stats.errors);
  if (leases) {
    const stats = leases.stats;
    totalCounter(metricsRegistry, 'maas_registry_lease_waited_out_total', 'Writes acknowledged only once a near-cache lease holder that did not acknowledge them lost its lease (a frozen or cut-off gateway), or when the holders could not be read', () => stats.waitedOut);
  }
  totalCounter(metricsRegistry, 'maas_registry_upload_bytes_total', 'Artifact bytes stored by successful uploads', () => registry.uploadedBytes);
  const server = new GrpcServer({
    host: config.host,
    port: config.port,
    credentials,
    // Upload chunks are small; this bounds one message, not the artifact.
    maxReceiveMessageBytes: 8 * 1024 * 1024,
    interceptors: [rpcInterceptor({ logger, metrics: rpcMetrics })],
  });
  server.addService('maas.v1.RegistryService', RegistryServiceService, new RegistryService(registry, { idleMs: config.uploadIdleMs, maxConcurrentUploads: config.maxConcurrentUploads }).handlers());
  const port = await server.start();
  let metrics: MetricsServer | undefined;
  if (config.metricsPort >= 0) metrics = await startMetricsServer({ registry: metricsRegistry, host: config.host, port: config.metricsPort });
  return {
    port,
    address: `${config.host}:${port}`,
    registry,
    cache,
    metricsPort: metrics?.port,
    async shutdown(graceMs = 10_000) {
      await server.shutdown(graceMs);
      await metrics?.shutdown();
      await store.shutdown();
      await bus.shutdown();
      await cache.shutdown();
    },
  };
}
