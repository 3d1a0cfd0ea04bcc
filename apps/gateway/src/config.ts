import { commonConfig, loadConfig, parse, type ConfigOf } from '@maas/config';
import { MAX_MESSAGE_BYTES } from '@maas/rpc';

/** Everything the gateway reads from its environment. */
export const gatewayConfigSchema = {
  ...commonConfig,
  host: { env: 'GATEWAY_HOST', default: '127.0.0.1', parse: parse.text, doc: 'Interface the public gRPC endpoint binds.' },
  port: { env: 'GATEWAY_PORT', default: 50050, parse: parse.port, doc: 'Public gRPC port; 0 picks a free one.' },
  httpPort: {
    env: 'GATEWAY_HTTP_PORT',
    default: 8000,
    parse: parse.integer({ min: -1, max: 65535 }),
    doc: 'Port of the Open Inference Protocol’s REST side (/v2/…, HTTPS when TLS is on), on GATEWAY_HOST; 0 picks a free one, -1 turns it off.',
  },
  auth: {
    env: 'GATEWAY_AUTH',
    default: 'on' as 'on' | 'off',
    parse: parse.oneOf('on', 'off'),
    doc: 'API-key checks: on, or off (only for a loopback development stack; logged loudly).',
  },
  apiKeysFile: { env: 'GATEWAY_API_KEYS_FILE', default: '', parse: parse.text, doc: 'JSON file of API keys: [{id, sha256, scopes, ratePerSecond, burst}] (hashes only).' },
  apiKeys: { env: 'GATEWAY_API_KEYS', default: '', parse: parse.text, doc: 'The same JSON inline, added to the file’s keys.' },
  homeNodes: { env: 'GATEWAY_HOME_NODES', default: 2, parse: parse.integer({ min: 1, max: 64 }), doc: 'Home nodes per model version (rendezvous hashing).' },
  inferenceNodes: {
    env: 'INFERENCE_NODES',
    default: ['127.0.0.1:50061'],
    parse: parse.hostPortList,
    doc: 'Static inference node addresses, used when CONSUL_HTTP_ADDR is unset.',
  },
  registryAddress: { env: 'REGISTRY_ADDRESS', default: '127.0.0.1:50051', parse: parse.hostPort, doc: 'Registry address, used when CONSUL_HTTP_ADDR is unset.' },
  maxMessageBytes: {
    env: 'GATEWAY_MAX_MESSAGE_BYTES',
    default: MAX_MESSAGE_BYTES,
    parse: parse.byteSize,
    doc: 'Largest request or response message (default 2 GiB − 1, as Triton); bigger ones fail with RESOURCE_EXHAUSTED naming the size and the limit.',
  },
  maxUploadsPerKey: {
    env: 'GATEWAY_MAX_UPLOADS_PER_KEY',
    default: 4,
    parse: parse.integer({ min: 1 }),
    doc: 'Uploads one API key may have open at once; more are refused with RESOURCE_EXHAUSTED (the registry caps the total and cuts idle ones).',
  },
  coalesceBytes: {
    env: 'GATEWAY_COALESCE_BYTES',
    default: 1024 * 1024,
    parse: parse.byteSize,
    doc: 'Concurrent Predicts of one batchable version (max_batch_size > 1) that arrive together go to the node as one call, stacked up to max_batch_size rows while their inputs and expected answer stay under this many bytes; 0 turns it off.',
  },
  rawPredict: {
    env: 'GATEWAY_RAW_PREDICT',
    default: 'on' as 'on' | 'off',
    parse: parse.oneOf('on', 'off'),
    doc: 'Predict served on the HTTP/2 stream directly (request bytes in, the node’s answer bytes out) instead of through grpc-js’s call layers; off serves it through grpc-js like every other method. Compressed requests always go through grpc-js.',
  },
  rawNodeClient: {
    env: 'GATEWAY_RAW_NODE_CLIENT',
    default: 'on' as 'on' | 'off',
    parse: parse.oneOf('on', 'off'),
    doc: 'Predicts sent to inference nodes on a plain node:http2 connection per node (headers, message and end of stream in one write; the answer’s bytes passed through) instead of through grpc-js’s call layers; off sends them through grpc-js. Over TLS (TLS_CA_FILE set) they always go through grpc-js.',
  },
  nodeFrames: {
    env: 'GATEWAY_NODE_FRAMES',
    default: 'on' as 'on' | 'off',
    parse: parse.oneOf('on', 'off'),
    doc: 'With GATEWAY_RAW_NODE_CLIENT=on: once a node’s Predict answer names its node-frames port (INFERENCE_FRAMES_PORT), its next Predicts go there, one plain TCP connection per node with every call a frame each way (less CPU per call than HTTP/2); a port that cannot be reached leaves them on HTTP/2. off: always HTTP/2.',
  },
  embeddedNode: {
    env: 'GATEWAY_EMBEDDED_NODE',
    default: 'off' as 'on' | 'off',
    parse: parse.oneOf('on', 'off'),
    doc: 'on: the gateway process also runs an inference node, configured by the INFERENCE_* variables (it serves other gateways on INFERENCE_PORT and registers in Consul as any node; its metrics on a free port, named in Consul), and Predicts routed to it are called in-process, with no hop and no encoding of the request. Without Consul it joins INFERENCE_NODES, and is the only node when INFERENCE_NODES is unset.',
  },
  advertiseAddress: { env: 'GATEWAY_ADVERTISE_ADDRESS', default: '', parse: parse.hostPort, doc: 'host:port registered in Consul as maas-gateway; unset: the bound address.' },
  defaultTimeoutMs: {
    env: 'GATEWAY_DEFAULT_TIMEOUT_MS',
    default: 30_000,
    parse: parse.integer({ min: 1 }),
    doc: 'Deadline given to a Predict whose caller set none.',
  },
  outlierFactor: {
    env: 'GATEWAY_OUTLIER_FACTOR',
    default: 3,
    parse: parse.number({ min: 0 }),
    doc: 'A node whose median time per Predict on a model version (its queue wait left out, shared among its calls outstanding) exceeds this × its peers’ (the median of their medians, plus GATEWAY_OUTLIER_MIN_EXTRA_MS) is ejected; 0 turns outlier ejection off.',
  },
  outlierMinExtraMs: {
    env: 'GATEWAY_OUTLIER_MIN_EXTRA_MS',
    default: 50,
    parse: parse.number({ min: 0 }),
    doc: 'Absolute latency margin of outlier ejection, so scheduling jitter on shared cores (tens of ms, measured) never ejects a healthy node.',
  },
  outlierEjectMs: {
    env: 'GATEWAY_OUTLIER_EJECT_MS',
    default: 10_000,
    parse: parse.integer({ min: 1 }),
    doc: 'How long a slow node gets no traffic while others can take it; then it is tried afresh.',
  },
  emptyDiscoveryGraceMs: {
    env: 'GATEWAY_EMPTY_DISCOVERY_GRACE_MS',
    default: 30_000,
    parse: parse.integer({ min: 0 }),
    doc: 'When Consul suddenly lists no inference node (an agent that lost its registrations), the known nodes stay this long while they register again; nodes really gone fail their calls and are ejected meanwhile. 0: believe it at once.',
  },
};

export type GatewayConfig = ConfigOf<typeof gatewayConfigSchema>;

/** Reads and validates the gateway's configuration. */
export function loadGatewayConfig(env: Record<string, string | undefined>, explicit: Partial<GatewayConfig> = {}): GatewayConfig {
  return loadConfig(gatewayConfigSchema, env, explicit);
}
