import { existsSync, readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { ConfigError, type ConfigField } from './config-schema';
import * as parse from './parsers';

/** Accepts `host:port` or an http(s) URL, as Consul's own CONSUL_HTTP_ADDR does. */
export function consulAddress(raw: string): string {
  if (/^https?:\/\//.test(raw)) return parse.url('http:', 'https:')(raw);
  return parse.hostPort(raw);
}

/** Fields every service reads the same way. */
export const commonConfig = {
  /** pino level of the service's JSON log. */
  logLevel: {
    env: 'LOG_LEVEL',
    default: 'info',
    parse: parse.oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
    doc: 'Log level of the JSON log on stdout: fatal, error, warn, info, debug, trace or silent.',
  } satisfies ConfigField<string>,
  /** Redis for the metadata cache and change events; unset means in-memory. */
  redisUrl: {
    env: 'REDIS_URL',
    default: '',
    parse: parse.url('redis:', 'rediss:'),
    doc: 'Redis URL (redis://host:port) for the metadata cache and change events; unset: in-process memory.',
  } satisfies ConfigField<string>,
  /** Lifetime of the in-process layer over the Redis cache; 0 turns the layer off. */
  cacheNearTtlMs: {
    env: 'CACHE_NEAR_TTL_MS',
    default: 10_000,
    parse: parse.integer({ min: 0 }),
    doc: 'With REDIS_URL: how long hot metadata is served from process memory (dropped at once by change events; bypassed while the event channel is down). 0: every read goes to Redis.',
  } satisfies ConfigField<number>,
  /** Whether the in-process layer holds a lease in Redis instead of reading a generation on every hit. */
  cacheLease: {
    env: 'CACHE_LEASE',
    default: 'on' as 'on' | 'off',
    parse: parse.oneOf('on', 'off'),
    doc: 'With REDIS_URL and the in-process layer on: the process holds a lease on that memory (renewed 4 times a second) and answers hits from it without reading the model’s generation in Redis each time; the registry acknowledges a write only once every lease holder has dropped what it changed, or its lease has run out (a frozen or cut-off process holds writes up for about a second at most). off: a generation read per hit, and writes do not wait for this process.',
  } satisfies ConfigField<'on' | 'off'>,
  /** Consul agent address; unset means static discovery. */
  consulAddress: {
    env: 'CONSUL_HTTP_ADDR',
    default: '',
    parse: consulAddress,
    doc: 'Consul agent (host:port or http URL) to register in and discover through; unset: static addresses.',
  } satisfies ConfigField<string>,
  /** ACL token for every Consul call, as Consul's own tools read it. */
  consulToken: {
    env: 'CONSUL_HTTP_TOKEN',
    default: '',
    parse: (raw: string) => raw.trim(),
    doc: 'ACL token sent as X-Consul-Token on every Consul call (needs service:write on the MaaS services and service:read / node:read to discover); unset: anonymous.',
  } satisfies ConfigField<string>,
  /** A file holding the ACL token, read at start-up; CONSUL_HTTP_TOKEN wins when both are set. */
  consulTokenFile: {
    env: 'CONSUL_HTTP_TOKEN_FILE',
    default: '',
    parse: (raw: string) => raw,
    doc: 'File holding the Consul ACL token (a mounted secret), read at start-up; CONSUL_HTTP_TOKEN wins when both are set.',
  } satisfies ConfigField<string>,
  /** TLS of the service's gRPC server and of its calls to other services. */
  tlsCertFile: {
    env: 'TLS_CERT_FILE',
    default: '',
    parse: parse.text,
    doc: 'PEM certificate chain of this service; with TLS_KEY_FILE, its gRPC server speaks TLS only.',
  } satisfies ConfigField<string>,
  tlsKeyFile: { env: 'TLS_KEY_FILE', default: '', parse: parse.text, doc: 'PEM private key of TLS_CERT_FILE.' } satisfies ConfigField<string>,
  tlsCaFile: {
    env: 'TLS_CA_FILE',
    default: '',
    parse: parse.text,
    doc: 'PEM CA bundle: calls to other MaaS services use TLS verified against it (presenting TLS_CERT_FILE), and it verifies client certificates.',
  } satisfies ConfigField<string>,
  tlsClientAuth: {
    env: 'TLS_CLIENT_AUTH',
    default: 'none' as 'none' | 'require',
    parse: parse.oneOf('none', 'require'),
    doc: 'require: the server accepts only clients with a certificate signed by TLS_CA_FILE (mTLS); none: any client.',
  } satisfies ConfigField<'none' | 'require'>,
  /** Port of the Prometheus `/metrics` endpoint; 0 picks a free port, -1 turns it off. */
  metricsPort: {
    env: 'METRICS_PORT',
    default: -1,
    parse: parse.integer({ min: -1, max: 65535 }),
    doc: 'Port of the Prometheus /metrics HTTP endpoint; 0 picks a free port, -1 turns it off.',
  } satisfies ConfigField<number>,
  /** V8's old-generation growing factor, applied at start-up by {@link applyHeapGrowing}. */
  heapGrowingPercent: {
    env: 'V8_HEAP_GROWING_PERCENT',
    default: 400,
    parse: parse.integer({ min: 0, max: 1000 }),
    doc: "How far V8 lets the JavaScript heap grow past what the last full GC kept before it starts the next one, in percent (400: to 5x); 0: V8's own choice.",
  } satisfies ConfigField<number>,
  /** Growth of held memory that makes an idle process collect garbage at once; see {@link startIdleGc}. */
  idleGcMiB: {
    env: 'IDLE_GC_MIB',
    default: 16,
    parse: parse.integer({ min: 0, max: 65536 }),
    doc: 'Once the event loop is idle (busy 10 % of a second or less) and V8\'s heap plus Buffers hold this many MiB more than the lowest level seen, collect garbage at once (and again 1-16 s later while that stays so), so a burst\'s memory goes back within seconds; 0: leave it to V8.',
  } satisfies ConfigField<number>,
};

/**
 * Sets V8's heap growing factor for this process (`--heap-growing-percent`),
 * read whenever V8 sizes its next full-GC limit, so setting it at start-up
 * takes effect from the first full GC on. Why: V8 counts the buffers a
 * service holds in flight (request tensors while their node works, answers
 * on their way out) against that limit, and at its own small-heap factor a
 * gateway moving PP-OCRv4's 1 MB answers at c=32 ran a full GC every ~130 ms
 * on a 13 MB heap: GC was about half of the gateway's CPU and a fifth of the
 * node's. At 300-600 (`bench:probe --model medium --target gateway`, one run):
 * full GCs 65 -> 17-22 a process in 16 s, gateway CPU 7.9 -> 4.6-5.0 ms per
 * request, node 38 -> 32-34.5, throughput 35 -> 40-43 req/s; peak resident
 * size +23-41 MiB on the gateway, +17-30 MiB on the node.
 */
export function applyHeapGrowing(config: { heapGrowingPercent: number }): void {
  if (config.heapGrowingPercent > 0) setFlagsFromString(`--heap-growing-percent=${config.heapGrowingPercent}`);
}

/**
 * glibc malloc settings for the processes that pass large buffers through
 * (the registry; the relaying gateway where jemalloc is missing, see
 * {@link gatewayMallocEnv}): allocations from 32 KiB up (tensors, chunks,
 * socket reads) are served by mmap and so go back to the system when freed,
 * and two arenas serve one JavaScript thread. Measured on the gateway after
 * 10 s of 10x overload, resident size against its level before: glibc's
 * defaults 1.3-1.5x 30 s later (V8's heap and external memory were back where
 * they were; the rest was freed memory glibc kept), a 128 KiB threshold
 * 1.19-1.23x, 68 KiB (Node's 64 KiB socket reads left out) 2x, 32 KiB
 * 0.8-1.1x within 17 s; tiny-model throughput the same (1,440 against 1,454
 * req/s in a 20 s soak). The price: a mmap per socket read, and refusals under
 * overload reached the load generator later (p99 0.9-1.0 s against 0.6 s at
 * 3x on the shared cores). Rechecked once the gateway stopped copying
 * tensors it relays: the settings cost it about 1.1 ms of CPU per PP-OCRv4
 * inference (3.6-3.75 against 2.4-2.6 ms on the defaults), and after a 10x
 * overload its resident size stays flat until the first garbage collection,
 * 18-27 s later, then falls below its level before; a 128 KiB threshold
 * collected 36-45 s later and kept up to 1.26x. Nodes keep the defaults:
 * onnxruntime has its own arenas and their memory accounting is calibrated
 * on them. So does a gateway with its node embedded: onnxruntime-node
 * allocates every output afresh (1 MB a PP-OCRv4 run), which these settings
 * hand back and fault in again on every run; `bench:probe --embedded` on
 * PP-OCRv4 at c=32 went from 59-61 req/s and 24.6-24.9 ms of the gateway's CPU
 * per inference to 23-28 req/s and 40-49 ms with them (set on every process
 * of the probe). Compose sets these on the registry, and on the relaying
 * gateway beside jemalloc; `maas dev`, the tests' process starter and the
 * bench too.
 */
export const BUFFER_MALLOC_ENV: Readonly<Record<string, string>> = { MALLOC_MMAP_THRESHOLD_: '32768', MALLOC_ARENA_MAX: '2' };

/**
 * Where the image links jemalloc (Debian's libjemalloc2, see the Dockerfile),
 * the same path on every architecture.
 */
export const JEMALLOC_IMAGE_PATH = '/usr/local/lib/libjemalloc.so.2';

/**
 * jemalloc's settings for the relaying gateway: freed pages go back to the
 * system over the ten seconds after they were last used (a background thread
 * purges them, also while the process is idle), and two arenas serve one
 * JavaScript thread.
 *
 * Why ten seconds, not one: under steady load the gateway frees the buffers
 * of the calls a garbage collection found dead all at once and takes them
 * again over the next fraction of a second. A one-second decay purged a
 * share of them in between, and every purged page came back as a page fault
 * (about 11 us each on a virtual machine measured here, plus the madvise and
 * its TLB shootdown). `bench:probe --model medium --target gateway
 * --concurrency 32`, three alternating pairs: 5.48 / 5.04 / 5.64 ms of the
 * gateway's CPU per inference and 117-130 faults per request at 1 s, 4.41 /
 * 3.85 / 6.03 ms and 47-109 faults at 10 s (never purging: 4.46 ms, 22
 * faults, but a burst's memory would never go back). A burst's memory is
 * still back within the fault suite's 30 s.
 */
export const JEMALLOC_CONF = 'background_thread:true,dirty_decay_ms:10000,muzzy_decay_ms:0,narenas:2';

/**
 * The relaying gateway's malloc: jemalloc (LD_PRELOAD) at `path`, with
 * {@link BUFFER_MALLOC_ENV} for glibc should it not load; glibc's settings
 * alone when `path` is undefined (no jemalloc installed).
 *
 * Why: the gateway moves every request and answer through buffers from
 * malloc, Node's 64 KiB socket reads above all. Under glibc with
 * BUFFER_MALLOC_ENV each of those is a fresh mapping faulted in page by page,
 * about 1 ms of CPU per PP-OCRv4 inference; glibc's defaults avoid that but
 * keep a burst's memory. jemalloc reuses freed blocks and still returns
 * unused pages within a second. Measured (`bench:probe --model medium
 * --target gateway --concurrency 32 --gateway-env`, alternating, G J J G G
 * J): the gateway spent 3.28-3.62 ms per inference on jemalloc against
 * 4.14-5.33 ms on BUFFER_MALLOC_ENV. After 10 s of 10x overload (the fault
 * suite's overload test, with {@link startIdleGc}) its resident size went
 * 174 -> 217 MiB during the burst and was back at 127 MiB 3 s after it, 84
 * MiB 21 s after. The registry keeps BUFFER_MALLOC_ENV: on jemalloc its
 * resident size grew 64 MiB during a 256 MiB upload against 43 MiB on glibc.
 */
export function gatewayMallocEnv(path: string | undefined): Readonly<Record<string, string>> {
  return path ? { LD_PRELOAD: path, MALLOC_CONF: JEMALLOC_CONF, ...BUFFER_MALLOC_ENV } : BUFFER_MALLOC_ENV;
}

/** jemalloc's shared library on this machine: the image's link, else Debian's and other distributions' places; undefined when none is there. */
export function jemallocPath(exists: (path: string) => boolean = existsSync): string | undefined {
  const multiarch = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  return [JEMALLOC_IMAGE_PATH, `/usr/lib/${multiarch}/libjemalloc.so.2`, '/usr/lib64/libjemalloc.so.2', '/usr/lib/libjemalloc.so.2'].find((p) => exists(p));
}

/**
 * The malloc settings a process started from a service entry point (`apps/<app>/src/main.ts`) with
 * `env` runs with, as compose gives them: {@link gatewayMallocEnv} for the relaying gateway,
 * {@link BUFFER_MALLOC_ENV} for the registry, glibc's defaults (none) for nodes and for a gateway
 * with its node embedded.
 */
export function bufferMallocEnvFor(entry: string, env: Readonly<Record<string, string | undefined>>): Readonly<Record<string, string>> {
  if (/apps\/registry\/src\/main\.ts$/.test(entry)) return BUFFER_MALLOC_ENV;
  return /apps\/gateway\/src\/main\.ts$/.test(entry) && env.GATEWAY_EMBEDDED_NODE !== 'on' ? gatewayMallocEnv(jemallocPath()) : {};
}

/**
 * The Consul ACL token a service uses: CONSUL_HTTP_TOKEN, else the contents of
 * CONSUL_HTTP_TOKEN_FILE (trimmed), else none. A token file that cannot be read
 * or is empty is a {@link ConfigError} naming it, not an anonymous start.
 */
export function consulTokenOf(config: { consulToken: string; consulTokenFile: string }): string | undefined {
  if (config.consulToken) return config.consulToken;
  if (!config.consulTokenFile) return undefined;
  let token: string;
  try {
    token = readFileSync(config.consulTokenFile, 'utf8').trim();
  } catch (err) {
    throw new ConfigError('CONSUL_HTTP_TOKEN_FILE', `CONSUL_HTTP_TOKEN_FILE ${config.consulTokenFile} cannot be read: ${(err as Error).message}`);
  }
  if (!token) throw new ConfigError('CONSUL_HTTP_TOKEN_FILE', `CONSUL_HTTP_TOKEN_FILE ${config.consulTokenFile} is empty: expected a Consul ACL token`);
  return token;
}
