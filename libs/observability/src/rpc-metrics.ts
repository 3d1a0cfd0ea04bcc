import { status } from '@grpc/grpc-js';
import { Counter, Histogram, type Registry } from 'prom-client';

/** Latency buckets in seconds, from 100 µs to 30 s. */
export const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const CODE_NAMES: Record<number, string> = Object.fromEntries(
  Object.entries(status)
    .filter(([, value]) => typeof value === 'number')
    .map(([name, value]) => [value as number, name]),
);

/** Name of a gRPC status code as Prometheus label value, e.g. `INVALID_ARGUMENT`. */
export function grpcCodeName(code: number): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

/**
 * The model a request message is about: its `model` field, a model call's
 * `name`, the model part of a `reference` (`m:3`, `m@prod`), or an upload's
 * metadata. Empty when the message names none.
 */
export function modelOf(message: unknown): { model: string; version: string } {
  if (!message || typeof message !== 'object') return { model: '', version: '' };
  const m = message as { model?: unknown; name?: unknown; reference?: unknown; version?: unknown; modelName?: unknown; payload?: { $case?: string; value?: unknown } };
  const version = typeof m.version === 'number' && m.version > 0 ? String(m.version) : '';
  if (typeof m.model === 'string') return { model: m.model, version };
  if (typeof m.modelName === 'string') return { model: m.modelName, version: '' };
  if (typeof m.reference === 'string') return { model: m.reference.split(/[:@]/)[0], version: '' };
  if (m.payload?.$case === 'metadata') return modelOf(m.payload.value);
  if (typeof m.name === 'string') return { model: m.name, version: '' };
  return { model: '', version: '' };
}

/**
 * Per-RPC request counters and latency histograms, labelled by method,
 * model, version and gRPC status code; fed by {@link rpcInterceptor}.
 */
export class RpcMetrics {
  readonly requests: Counter<'method' | 'model' | 'version' | 'code'>;
  readonly duration: Histogram<'method' | 'model' | 'code'>;
  private readonly series = new Map<string, { requests: { inc(): void }; duration: { observe(seconds: number): void } }>();

  constructor(registry: Registry) {
    this.requests = new Counter({
      name: 'maas_rpc_requests_total',
      help: 'gRPC calls handled, by method, model, version and status code',
      labelNames: ['method', 'model', 'version', 'code'],
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'maas_rpc_duration_seconds',
      help: 'gRPC call latency from request headers to status, by method, model and status code',
      labelNames: ['method', 'model', 'code'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });
  }

  /** Records one finished call. */
  observe(method: string, model: string, version: string, code: number, seconds: number): void {
    const key = `${method}\u0000${model}\u0000${version}\u0000${code}`;
    let series = this.series.get(key);
    if (!series) {
      // prom-client hashes the label object on every call; the labelled children are kept instead.
      const codeName = grpcCodeName(code);
      series = { requests: this.requests.labels({ method, model, version, code: codeName }), duration: this.duration.labels({ method, model, code: codeName }) };
      if (this.series.size >= 10_000) this.series.clear();
      this.series.set(key, series);
    }
    series.requests.inc();
    series.duration.observe(seconds);
  }
}
