import { hostname } from 'node:os';
import { MAX_MESSAGE_BYTES } from '@maas/rpc';
import { commonConfig, loadConfig, parse, type ConfigOf } from '@maas/config';

/** Everything an inference node reads from its environment. */
export const inferenceConfigSchema = {
  logLevel: commonConfig.logLevel,
  consulAddress: commonConfig.consulAddress,
  consulToken: commonConfig.consulToken,
  consulTokenFile: commonConfig.consulTokenFile,
  redisUrl: commonConfig.redisUrl,
  metricsPort: commonConfig.metricsPort,
  heapGrowingPercent: commonConfig.heapGrowingPercent,
  idleGcMiB: commonConfig.idleGcMiB,
  tlsCertFile: commonConfig.tlsCertFile,
  tlsKeyFile: commonConfig.tlsKeyFile,
  tlsCaFile: commonConfig.tlsCaFile,
  tlsClientAuth: commonConfig.tlsClientAuth,
  rawPredict: {
    env: 'INFERENCE_RAW_PREDICT',
    default: 'on' as 'on' | 'off',
    parse: parse.oneOf('on', 'off'),
    doc: 'Predict served on the HTTP/2 stream directly (request bytes in, the encoded answer written as it is) instead of through grpc-js’s call layers; off serves it through grpc-js like every other method. Compressed requests always go through grpc-js.',
  },
  framesPort: {
    env: 'INFERENCE_FRAMES_PORT',
    default: 0,
    parse: parse.integer({ min: -1, max: 65535 }),
    doc: 'Port of the node-frames server (Predict on a plain TCP connection, which gateways and internal clients switch to once a Predict answer names it: less CPU per call than HTTP/2); 0 picks a free one, -1 turns it off. Off as well with TLS or INFERENCE_RAW_PREDICT=off.',
  },
  host: { env: 'INFERENCE_HOST', default: '127.0.0.1', parse: parse.text, doc: 'Interface the node gRPC server binds.' },
  port: { env: 'INFERENCE_PORT', default: 50061, parse: parse.port, doc: 'Node gRPC port; 0 picks a free one.' },
  nodeId: { env: 'INFERENCE_NODE_ID', default: '', parse: parse.text, doc: 'Unique node id (Consul service ID); unset: <hostname>-<port>.' },
  advertiseAddress: {
    env: 'INFERENCE_ADVERTISE_ADDRESS',
    default: '',
    parse: parse.hostPort,
    doc: 'host:port the gateway dials, registered in Consul; unset: the bound address.',
  },
  cacheDir: { env: 'INFERENCE_CACHE_DIR', default: '', parse: parse.text, doc: 'Artifact cache folder; unset: .maas/node-<port>.' },
  memoryBudgetBytes: {
    env: 'INFERENCE_MEMORY_BUDGET',
    default: 2 * 1024 ** 3,
    parse: parse.byteSize,
    doc: 'Resident memory the loaded versions may hold: each counted as its measured cost (predicted at load as 16 MiB + 4 × artifact size per instance, then the RSS growth its load and runs caused); LRU idle versions unload beyond it.',
  },
  intraOpThreads: { env: 'INFERENCE_INTRA_OP_THREADS', default: 1, parse: parse.integer({ min: 1, max: 256 }), doc: 'onnxruntime intra-op threads per session.' },
  interOpThreads: { env: 'INFERENCE_INTER_OP_THREADS', default: 1, parse: parse.integer({ min: 1, max: 256 }), doc: 'onnxruntime inter-op threads per session.' },
  intraOpSpinning: {
    env: 'INFERENCE_INTRA_OP_SPINNING',
    default: 'on' as 'on' | 'off',
    parse: parse.oneOf('on', 'off'),
    doc: 'Whether idle onnxruntime intra-op threads spin (on: lowest latency on dedicated cores; off: they yield the CPU to the gRPC and other processes sharing the cores).',
  },
  adaptiveBatching: {
    env: 'INFERENCE_ADAPTIVE_BATCHING',
    default: 'on' as 'on' | 'off',
    parse: parse.oneOf('on', 'off'),
    doc: 'on: each batching version times its runs by size and caps batches at the size that runs fastest per row (never above max_batch_size; some models run slower per row in larger batches); off: batches fill up to max_batch_size.',
  },
  sessionThreadMinBytes: {
    env: 'INFERENCE_SESSION_THREAD_MIN_BYTES',
    default: 1024 * 1024,
    parse: parse.byteSize,
    doc: 'Versions with artifacts at least this big run on a worker thread of their own, so long runs do not stop the node’s event loop; smaller ones run inline (no hand-off). 0: every version on a thread.',
  },
  tags: { env: 'INFERENCE_TAGS', default: [] as string[], parse: parse.list, doc: 'Comma-separated tags registered in Consul.' },
  registryAddress: { env: 'REGISTRY_ADDRESS', default: '127.0.0.1:50051', parse: parse.hostPort, doc: 'Registry the node pulls artifacts and metadata from.' },
  maxMessageBytes: {
    env: 'INFERENCE_MAX_MESSAGE_BYTES',
    default: MAX_MESSAGE_BYTES,
    parse: parse.byteSize,
    doc: 'Largest request or answer message of the node (default 2 GiB − 1); a bigger answer fails with RESOURCE_EXHAUSTED naming its size, and is not retried elsewhere.',
  },
  reconcileIntervalMs: {
    env: 'INFERENCE_RECONCILE_INTERVAL_MS',
    default: 5000,
    parse: parse.integer({ min: 100 }),
    doc: 'How often the node asks the registry whether each loaded version still exists with the same artifact, unloading those deleted, archived or replaced (with REDIS_URL, change events do it at once too).',
  },
  drainTimeoutMs: {
    env: 'INFERENCE_DRAIN_TIMEOUT_MS',
    default: 30_000,
    parse: parse.integer({ min: 0 }),
    doc: 'On SIGTERM, how long in-flight requests may take to finish before the server stops.',
  },
};

export type InferenceConfig = ConfigOf<typeof inferenceConfigSchema>;

/** Reads and validates the node's configuration. */
export function loadInferenceConfig(env: Record<string, string | undefined>, explicit: Partial<InferenceConfig> = {}): InferenceConfig {
  return loadConfig(inferenceConfigSchema, env, explicit);
}

/** The node id to use: configured, else `<hostname>-<port>`. */
export function nodeIdOf(config: InferenceConfig, port: number): string {
  return config.nodeId || `${hostname()}-${port}`;
}
