import { ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';
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
 * model, version and gRPC status code.
 */
export class RpcMetrics {
  readonly requests: Counter<'method' | 'model' | 'version' | 'code'>;
  readonly duration: Histogram<'method' | 'model' | 'code'>;

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
    const codeName = grpcCodeName(code);
    this.requests.inc({ method, model, version, code: codeName });
    this.duration.observe({ method, model, code: codeName }, seconds);
  }

  /**
   * A grpc-js server interceptor recording every call. The model and version
   * labels come from the first request message's `model` and `version`
   * fields when it has them (Predict, ModelMetadata, LoadModel, ...).
   */
  interceptor(): ServerInterceptor {
    return (descriptor, call) => {
      const started = process.hrtime.bigint();
      const method = descriptor.path.slice(descriptor.path.lastIndexOf('/') + 1);
      let model = '';
      let version = '';
      return new ServerInterceptingCall(call, {
        start: (next) =>
          next({
            onReceiveMessage: (message: unknown, nextMessage) => {
              if (!model) ({ model, version } = modelOf(message));
              nextMessage(message);
            },
          }),
        sendStatus: (statusObject, next) => {
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          const code = statusObject.code ?? status.UNKNOWN;
          // Names a client got wrong are not labels: they would let bad input grow the series set.
          const trusted = code !== status.INVALID_ARGUMENT && code !== status.NOT_FOUND;
          this.observe(method, trusted ? model : '', trusted ? version : '', code, seconds);
          next(statusObject);
        },
      });
    };
  }
}
