import { join } from 'node:path';
import { createChangeBus } from '@maas/cache';
import { joinHostPort, SERVICE_INFERENCE, splitHostPort, type Registrar } from '@maas/discovery';
import { InferenceServiceWire, type PredictRequest } from '@maas/proto';
import { createMetricsRegistry, rpcObserver, RpcMetrics, silentLogger, startMetricsServer, totalCounter, type Logger, type MetricsServer } from '@maas/observability';
import { RegistryClient } from '@maas/registry-client';
import { Metadata, status } from '@grpc/grpc-js';
import { beginWatches, callFailure, endWatches, checkTlsFiles, clientCredentials, FRAMES_HEADER, FrameServer, GrpcServer, type CallObserver, observingInterceptor, RECEIVE_WINDOW_BYTES, serverCredentials, tlsEnabled, tlsFilesOf } from '@maas/rpc';
import { ArtifactCache } from './artifact-cache';
import { nodeIdOf, type InferenceConfig } from './config';
import { registerInferenceMetrics } from './inference-metrics';
import { InferenceService, type InProcessAnswer, type InProcessCallOptions } from './inference-service';
import { ModelManager } from './model-manager';
import { startReconciler } from './reconciler';

/** Collaborators built outside, by main.ts or a test. */
export interface InferenceDeps {
  logger?: Logger;
  /** Registers the node (Consul) when given. */
  registrar?: Registrar;
}

/** A running inference node. */
export interface InferenceNode {
  port: number;
  address: string;
  nodeId: string;
  manager: ModelManager;
  artifacts: ArtifactCache;
  server: GrpcServer;
  /** The node-frames server, when on (see INFERENCE_FRAMES_PORT). */
  frames?: FrameServer;
  metricsPort?: number;
  /** Predict from this same process (a gateway with the node embedded), without a transport. */
  predictInProcess(request: PredictRequest, opts: InProcessCallOptions): Promise<InProcessAnswer>;
  /**
   * Graceful stop: health NOT_SERVING and deregistration first (so routers stop
   * sending), then in-flight requests drain (up to `graceMs`), then sessions are released.
   */
  shutdown(graceMs?: number): Promise<void>;
}

/**
 * An in-process Predict with the node's observers run on it as on a call
 * that came over the wire: its request id in the node's logs, its count and
 * latency in the node's RPC metrics.
 */
async function observedInProcess(observers: readonly CallObserver[], service: InferenceService, request: PredictRequest, opts: InProcessCallOptions): Promise<InProcessAnswer> {
  const metadata = opts.metadata ?? new Metadata();
  const { watches, refusal } = beginWatches(observers, { path: InferenceServiceWire.predict.path, metadata, deadline: opts.deadline }, 'Predict');
  if (refusal) throw callFailure(refusal.code, refusal.details, refusal.metadata ?? undefined);
  for (const watch of watches) watch.message?.(request);
  try {
    const answer = await service.predictInProcess(request, { ...opts, metadata });
    endWatches(watches, { code: status.OK, details: '' });
    return answer;
  } catch (err) {
    const { code, details } = err as { code: number; details: string };
    endWatches(watches, { code, details });
    throw err;
  }
}

/** Builds an inference node from its configuration and starts serving. */
export async function startInferenceNode(config: InferenceConfig, deps: InferenceDeps = {}): Promise<InferenceNode> {
  const tls = tlsFilesOf(config);
  checkTlsFiles(tls);
  const logger = deps.logger ?? silentLogger();
  const registry = new RegistryClient(config.registryAddress, { credentials: clientCredentials(tls) });
  const artifacts = new ArtifactCache(config.cacheDir || join('.maas', `node-${config.port || process.pid}`), registry);
  const manager = new ModelManager(registry, artifacts, {
    memoryBudgetBytes: config.memoryBudgetBytes,
    intraOpThreads: config.intraOpThreads,
    intraOpSpinning: config.intraOpSpinning === 'on',
    adaptiveBatching: config.adaptiveBatching === 'on',
    sessionThreadMinBytes: config.sessionThreadMinBytes,
    interOpThreads: config.interOpThreads,
    logger,
  });
  const metricsRegistry = createMetricsRegistry('inference', { defaultMetrics: config.metricsPort >= 0 });
  const rpcMetrics = new RpcMetrics(metricsRegistry);
  registerInferenceMetrics(metricsRegistry, manager);
  // Run on every call, whether grpc-js or the raw Predict route serves it.
  const observers = [rpcObserver({ logger, metrics: rpcMetrics })];
  const server = new GrpcServer({
    host: config.host,
    port: config.port,
    credentials: serverCredentials(tls),
    maxReceiveMessageBytes: config.maxMessageBytes,
    maxSendMessageBytes: config.maxMessageBytes,
    interceptors: [observingInterceptor(observers)],
    // onnxruntime-node runs block the event loop; a wide window lets clients keep sending meanwhile.
    receiveWindowBytes: RECEIVE_WINDOW_BYTES,
  });
  let nodeId = config.nodeId;
  const service = new InferenceService(manager, registry, () => nodeId, { maxMessageBytes: config.maxMessageBytes });
  server.addService('maas.v1.InferenceService', InferenceServiceWire, service.handlers());
  let frames: FrameServer | undefined;
  const route = config.rawPredict === 'on' ? service.predictRoute(observers) : undefined;
  if (route) {
    // Plain TCP: never beside a TLS server, whose clients it would bypass.
    if (config.framesPort >= 0 && !tlsEnabled(tls)) {
      frames = new FrameServer({ host: config.host, port: config.framesPort, maxReceiveMessageBytes: config.maxMessageBytes, maxSendMessageBytes: config.maxMessageBytes });
      frames.add(route);
      await frames.start();
      const served = frames.stats;
      totalCounter(metricsRegistry, 'maas_inference_frames_calls_total', 'Predicts taken on the node-frames server (the rest came over gRPC)', () => served.calls);
    }
    server.addRawUnary(route);
  }
  const port = await server.start();
  const reconciler = startReconciler(manager, { intervalMs: config.reconcileIntervalMs, bus: config.redisUrl ? createChangeBus({ redisUrl: config.redisUrl, logger, role: 'reader' }) : undefined, logger });
  nodeId = nodeIdOf(config, port);
  const advertised = config.advertiseAddress ? splitHostPort(config.advertiseAddress) : { host: config.host, port };
  // Offered on every HTTP/2 Predict answer, to clients that dialled this very address (see FRAMES_HEADER).
  if (route && frames) route.headers = { [FRAMES_HEADER]: `${frames.port}@${joinHostPort(advertised.host, advertised.port)}` };
  let metrics: MetricsServer | undefined;
  if (config.metricsPort >= 0) metrics = await startMetricsServer({ registry: metricsRegistry, host: config.host, port: config.metricsPort });
  if (deps.registrar) {
    await deps.registrar.register({
      name: SERVICE_INFERENCE,
      id: nodeId,
      address: advertised.host,
      port: advertised.port,
      advertiseVariable: 'INFERENCE_ADVERTISE_ADDRESS',
      tags: config.tags,
      meta: { node_id: nodeId, capacity_bytes: String(config.memoryBudgetBytes), ...(metrics ? { metrics_port: String(metrics.port) } : {}) },
      check: { deregisterCriticalAfterSeconds: 60, tls: tlsEnabled(tls) },
    });
  }
  return {
    port,
    address: `${config.host}:${port}`,
    nodeId,
    manager,
    artifacts,
    server,
    frames,
    metricsPort: metrics?.port,
    predictInProcess: (request, opts) => observedInProcess(observers, service, request, opts),
    async shutdown(graceMs = config.drainTimeoutMs) {
      server.setServing(false);
      if (deps.registrar) {
        await deps.registrar.deregister(nodeId).catch((err: unknown) => logger.warn({ err: (err as Error).message }, 'deregistration failed'));
      }
      // Refuse new calls, let running ones (and their queued batches) finish.
      await Promise.all([server.shutdown(graceMs), frames?.shutdown(graceMs)]);
      await reconciler.shutdown();
      await manager.shutdown();
      await metrics?.shutdown();
      registry.close();
    },
  };
}
