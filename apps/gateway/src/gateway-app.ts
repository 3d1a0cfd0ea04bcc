import { readFile } from 'node:fs/promises';
import { Gauge } from 'prom-client';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { createChangeBus, createMetadataCache, NearMetadataCache, redisLayerOf, type ChangeBus, type MetadataCache } from '@maas/cache';
import { ConsulDiscovery, createDiscovery, SERVICE_GATEWAY, SERVICE_INFERENCE, SERVICE_REGISTRY, splitHostPort, type Discovery, type Registrar } from '@maas/discovery';
import { gatewayFileDescriptors, kserve, RegistryServiceService } from '@maas/proto';
import { createMetricsRegistry, rpcObserver, RpcMetrics, leaseMetrics, totalCounter, silentLogger, startMetricsServer, type Logger, type MetricsServer } from '@maas/observability';
import { RegistryClient } from '@maas/registry-client';
import { checkTlsFiles, clientCredentials, GrpcServer, httpsOptionsOf, observingInterceptor, serverCredentials, tlsEnabled, tlsFilesOf } from '@maas/rpc';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { ApiKeyAuthenticator, parseApiKeys, type ApiKeyEntry } from '@maas/auth';
import type { GatewayConfig } from './config';
import { GatewayAuth } from './gateway-auth';
import { Admission } from './admission';
import { contextOf, GatewayService, GatewayServiceServed } from './gateway-service';
import { intakeShedding } from './intake-shedding';
import { KserveV2Http } from './kserve/kserve-v2-http';
import { KserveV2Service } from './kserve/kserve-v2-service';
import { NodePool, type InProcessPredict } from '@maas/inference-client';
import { ModelStatistics } from './model-statistics';
import { PredictRouter } from './predict-router';
import { RegistryProxy } from './registry-proxy';
import { VersionResolver } from './version-resolver';

/**
 * HTTP/2 receive window of each client connection as a whole. A client's
 * calls share it: at the 64 KiB default, under overload the bodies of the
 * calls admitted (184 KB each for an image model) crawled in behind each
 * other's window updates and behind the first bytes of the calls refused at
 * their headers, 1.5-3.5 s per request while the nodes sat partly idle.
 * Streams keep the 64 KiB window, so each call (an upload) is still held back.
 */
const CONNECTION_WINDOW_BYTES = 1024 * 1024;

/** The services the gateway answers, as server reflection lists them. */
const REFLECTED_SERVICES = ['maas.v1.GatewayService', 'maas.v1.RegistryService', 'inference.GRPCInferenceService', 'grpc.health.v1.Health'] as const;

/** Collaborators built outside, by main.ts or a test. */
export interface GatewayDeps {
  logger?: Logger;
  registrar?: Registrar;
  /** Replaces the discovery built from the config. */
  discovery?: Discovery;
  /** Consul ACL token for discovery (CONSUL_HTTP_TOKEN or its file, read by main). */
  consulToken?: string;
  /** An inference node running in this process (GATEWAY_EMBEDDED_NODE): Predicts routed to it are called in-process. */
  inProcessNode?: { id: string; address: string; predict: InProcessPredict };
}

/** A running gateway. */
export interface GatewayApp {
  port: number;
  address: string;
  pool: NodePool;
  router: PredictRouter;
  metricsPort?: number;
  /** Port of the REST side (/v2), when it is on. */
  httpPort?: number;
  shutdown(graceMs?: number): Promise<void>;
}

/** The registry client for the current healthy registry instance (static or from discovery). */
class RegistryEndpoint {
  private client?: RegistryClient;
  private readonly unsubscribe: () => void;

  constructor(discovery: Discovery, fallback: string, credentials: ChannelCredentials) {
    this.unsubscribe = discovery.watch(SERVICE_REGISTRY, (instances) => {
      const address = instances[0]?.address;
      if (address && address !== this.client?.address) {
        this.client?.close();
        this.client = new RegistryClient(address, { credentials });
      }
    });
    if (!this.client) this.client = new RegistryClient(fallback, { credentials });
  }

  get current(): RegistryClient {
    return this.client!;
  }

  close(): void {
    this.unsubscribe();
    this.client?.close();
  }
}

async function loadKeys(config: GatewayConfig): Promise<ApiKeyEntry[]> {
  const keys: ApiKeyEntry[] = [];
  if (config.apiKeysFile) keys.push(...parseApiKeys(await readFile(config.apiKeysFile, 'utf8'), `GATEWAY_API_KEYS_FILE (${config.apiKeysFile})`));
  if (config.apiKeys) keys.push(...parseApiKeys(config.apiKeys, 'GATEWAY_API_KEYS'));
  return keys;
}

/** Builds the gateway from its configuration and starts serving. */
export async function startGateway(config: GatewayConfig, deps: GatewayDeps = {}): Promise<GatewayApp> {
  const tls = tlsFilesOf(config);
  checkTlsFiles(tls);
  const logger = deps.logger ?? silentLogger();
  const discovery =
    deps.discovery ??
    createDiscovery({
      consulAddress: config.consulAddress || undefined,
      consulToken: deps.consulToken,
      static: { [SERVICE_INFERENCE]: config.inferenceNodes, [SERVICE_REGISTRY]: [config.registryAddress] },
      logger,
    });
  const internalCredentials = clientCredentials(tls);
  const registry = new RegistryEndpoint(discovery, config.registryAddress, internalCredentials);
  let cache: MetadataCache | undefined;
  let bus: ChangeBus | undefined;
  if (config.redisUrl) {
    bus = createChangeBus({ redisUrl: config.redisUrl, logger, role: 'reader' });
    bus.subscribe((event) => logger.debug({ event }, 'model change'));
    cache = createMetadataCache({ redisUrl: config.redisUrl, logger, near: { bus, ttlMs: config.cacheNearTtlMs, lease: config.cacheLease === 'on' } });
    if (!(await redisLayerOf(cache)!.ready())) logger.warn({ redisUrl: config.redisUrl }, 'redis is not reachable; resolving through the registry until it is');
  }
  const keys = config.auth === 'on' ? await loadKeys(config) : [];
  const auth = new GatewayAuth(config.auth === 'on' ? new ApiKeyAuthenticator(keys) : undefined);
  if (config.auth === 'off') logger.warn('API-key auth is OFF (GATEWAY_AUTH=off): every caller may predict and change models; use only on loopback');
  else if (keys.length === 0) logger.warn('API-key auth is on but no keys are configured: every call will be refused with UNAUTHENTICATED');

  const pool = new NodePool(discovery, {
    maxMessageBytes: config.maxMessageBytes,
    credentials: internalCredentials,
    emptyGraceMs: config.emptyDiscoveryGraceMs,
    rawClient: config.rawNodeClient === 'on',
    frames: config.nodeFrames === 'on',
    inProcess: deps.inProcessNode,
    logger,
  });
  const statistics = new ModelStatistics();
  const router = new PredictRouter(pool, new VersionResolver(() => registry.current, cache), {
    statistics,
    homeNodes: config.homeNodes,
    defaultTimeoutMs: config.defaultTimeoutMs,
    coalesce: { maxBytes: config.coalesceBytes },
    outliers: { factor: config.outlierFactor, minExtraMs: config.outlierMinExtraMs, ejectMs: config.outlierEjectMs },
    logger,
  });
  const gatewayService = new GatewayService(router, pool, () => registry.current, auth);
  const metricsRegistry = createMetricsRegistry('gateway', { defaultMetrics: config.metricsPort >= 0 });
  const coalesced = router.coalescer?.stats;
  if (coalesced) {
    totalCounter(metricsRegistry, 'maas_gateway_stacked_calls_total', 'Node calls that carried several Predicts of one version, stacked', () => coalesced.stackedCalls);
    totalCounter(metricsRegistry, 'maas_gateway_stacked_requests_total', 'Predicts that went to a node stacked with others', () => coalesced.stackedRequests);
  }
  if (cache) {
    const stats = cache.stats;
    totalCounter(metricsRegistry, 'maas_cache_hits_total', 'Version resolutions answered by the Redis cache', () => stats.hits);
    totalCounter(metricsRegistry, 'maas_cache_misses_total', 'Version resolutions that asked the registry', () => stats.misses);
    if (cache instanceof NearMetadataCache) {
      const near = cache;
      totalCounter(metricsRegistry, 'maas_cache_near_hits_total', 'Version resolutions answered from process memory (included in the hits)', () => near.stats.nearHits);
      if (near.lease) leaseMetrics(metricsRegistry, near.lease);
    }
  }
  new Gauge({
    name: 'maas_discovery_instances',
    help: 'Healthy instances the gateway knows, by service',
    labelNames: ['service'],
    registers: [metricsRegistry],
    collect() {
      for (const service of [SERVICE_INFERENCE, SERVICE_REGISTRY]) this.set({ service }, discovery.instances(service).length);
    },
  });
  new Gauge({
    name: 'maas_discovery_watch_failures',
    help: 'Consecutive failed Consul queries of the watch, by service (0 = healthy watch)',
    labelNames: ['service'],
    registers: [metricsRegistry],
    collect() {
      if (!(discovery instanceof ConsulDiscovery)) return;
      for (const service of [SERVICE_INFERENCE, SERVICE_REGISTRY]) this.set({ service }, discovery.watchState(service).consecutiveFailures);
    },
  });
  // Shared by gRPC and REST inference calls: the gateway as a whole is admitted once, whatever the protocol.
  const intake = new Admission();
  // Run on every call, whether grpc-js or the raw Predict route serves it.
  const observers = [
    rpcObserver({ logger, metrics: new RpcMetrics(metricsRegistry) }),
    intakeShedding(intake, new Set([GatewayServiceServed.predict.path, kserve.GRPCInferenceServiceService.modelInfer.path])),
  ];
  const server = new GrpcServer({
    host: config.host,
    port: config.port,
    credentials: serverCredentials(tls),
    maxReceiveMessageBytes: config.maxMessageBytes,
    maxSendMessageBytes: config.maxMessageBytes,
    interceptors: [observingInterceptor(observers)],
    // The 64 KiB default stream window stays: it keeps an upload at most that far ahead of the registry.
    // Gateway RSS peak of a 96 MiB upload, measured: 13-28 MiB with the default, 17-36.5 MiB with
    // 1 MiB, 40-67 MiB with 16 MiB; a 1 MiB window gained PP-OCRv4 Predict only 59-60 -> 61-69 req/s.
    connectionWindowBytes: CONNECTION_WINDOW_BYTES,
  });
  server.addService('maas.v1.GatewayService', GatewayServiceServed, gatewayService.handlers());
  if (config.rawPredict === 'on') server.addRawUnary(gatewayService.predictRoute(observers));
  server.addService('maas.v1.RegistryService', RegistryServiceService, new RegistryProxy(() => registry.current, auth, (model) => (cache instanceof NearMetadataCache ? cache.forget(model) : undefined), config.maxUploadsPerKey).handlers());
  const kserveService = new KserveV2Service({
    authorize: (call, scope) => void auth.authorize(call, scope),
    predict: (request, call) => router.predict(request, contextOf(call)),
    modelMetadata: (request, call) => gatewayService.modelMetadata(request, call),
    ready: () => pool.all().length > 0,
    statistics,
    repositoryIndex: (readyOnly, call) => gatewayService.repositoryIndex(readyOnly, call),
    loadModel: (name, call) => gatewayService.loadModel(name, call),
    unloadModel: (name, call) => gatewayService.unloadModel(name, call),
  }, { rest: config.httpPort >= 0 });
  server.addService('inference.GRPCInferenceService', kserve.GRPCInferenceServiceService, kserveService.handlers());
  // Reflection from protoc's own descriptors, listing exactly the services answered here (what grpcurl
  // and other strict descriptor pools accept; proto-loader's rebuilt descriptors were refused).
  const descriptors = { fileDescriptorProtos: gatewayFileDescriptors() };
  new ReflectionService({ descriptors } as unknown as PackageDefinition, { services: [...REFLECTED_SERVICES] }).addToServer(server.server);
  const port = await server.start();
  let http: KserveV2Http | undefined;
  let httpPort: number | undefined;
  if (config.httpPort >= 0) {
    http = new KserveV2Http({ service: kserveService, admission: intake, maxBodyBytes: config.maxMessageBytes, tls: httpsOptionsOf(tls), logger });
    try {
      httpPort = await http.listen(config.host, config.httpPort);
    } catch (err) {
      await server.shutdown(0);
      throw new Error(`cannot serve REST on ${config.host}:${config.httpPort} (GATEWAY_HTTP_PORT; -1 turns it off): ${(err as Error).message}`, { cause: err });
    }
  }
  let metrics: MetricsServer | undefined;
  if (config.metricsPort >= 0) metrics = await startMetricsServer({ registry: metricsRegistry, host: config.host, port: config.metricsPort });
  const advertised = config.advertiseAddress ? splitHostPort(config.advertiseAddress) : { host: config.host, port };
  const id = `gateway-${advertised.host}-${advertised.port}`;
  await deps.registrar?.register({ name: SERVICE_GATEWAY, id, address: advertised.host, port: advertised.port, advertiseVariable: 'GATEWAY_ADVERTISE_ADDRESS', meta: metrics ? { metrics_port: String(metrics.port) } : {}, check: { tls: tlsEnabled(tls) } });
  return {
    port,
    address: `${config.host}:${port}`,
    pool,
    router,
    metricsPort: metrics?.port,
    httpPort,
    async shutdown(graceMs = 10_000) {
      server.setServing(false);
      await deps.registrar?.shutdown();
      await Promise.all([server.shutdown(graceMs), http?.shutdown(graceMs)]);
      await pool.shutdown();
      registry.close();
      await discovery.shutdown();
      await metrics?.shutdown();
      await bus?.shutdown();
      await cache?.shutdown();
    },
  };
}
