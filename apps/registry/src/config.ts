import { commonConfig, loadConfig, parse, type ConfigOf } from '@maas/config';

/** Everything the registry reads from its environment. */
export const registryConfigSchema = {
  ...commonConfig,
  host: { env: 'REGISTRY_HOST', default: '127.0.0.1', parse: parse.text, doc: 'Interface the registry gRPC server binds.' },
  port: { env: 'REGISTRY_PORT', default: 50051, parse: parse.port, doc: 'Registry gRPC port; 0 picks a free one.' },
  dataDir: { env: 'REGISTRY_DATA_DIR', default: '.maas/registry', parse: parse.text, doc: 'Model repository folder.' },
  uploadIdleMs: {
    env: 'REGISTRY_UPLOAD_IDLE_MS',
    default: 30_000,
    parse: parse.integer({ min: 100 }),
    doc: 'An upload stream that sends nothing for this long is cut with DEADLINE_EXCEEDED and its staged bytes removed.',
  },
  maxConcurrentUploads: {
    env: 'REGISTRY_MAX_CONCURRENT_UPLOADS',
    default: 64,
    parse: parse.integer({ min: 1 }),
    doc: 'Uploads the registry takes at once (each holds a file and a staging folder); more are refused with RESOURCE_EXHAUSTED.',
  },
  maxUploadBytes: {
    env: 'REGISTRY_MAX_UPLOAD_BYTES',
    default: 2 * 1024 ** 3,
    parse: parse.byteSize,
    doc: 'Largest artifact accepted (e.g. 2GiB); bigger uploads fail with RESOURCE_EXHAUSTED.',
  },
  verifyMaxBytes: {
    env: 'REGISTRY_VERIFY_MAX_BYTES',
    default: 256 * 1024 ** 2,
    parse: parse.byteSize,
    doc: 'Artifacts up to this size are also loaded once by onnxruntime at upload (memory ≈ their size for a moment); bigger ones are checked structurally.',
  },
  cacheTtlSeconds: {
    env: 'REGISTRY_CACHE_TTL_SECONDS',
    default: 300,
    parse: parse.integer({ min: 0, max: 86_400 }),
    doc: 'Lifetime of cached metadata; bounds staleness should an invalidation ever be lost. 0 turns caching off.',
  },
  advertiseAddress: {
    env: 'REGISTRY_ADVERTISE_ADDRESS',
    default: '',
    parse: parse.hostPort,
    doc: 'host:port other services reach the registry at, registered in Consul; unset: the bound address.',
  },
};

export type RegistryConfig = ConfigOf<typeof registryConfigSchema>;

/** Reads and validates the registry's configuration. */
export function loadRegistryConfig(env: Record<string, string | undefined>, explicit: Partial<RegistryConfig> = {}): RegistryConfig {
  return loadConfig(registryConfigSchema, env, explicit);
}
