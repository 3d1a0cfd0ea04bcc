import { randomUUID } from 'node:crypto';
import { status, type ServerInterceptor } from '@grpc/grpc-js';
import { observingInterceptor, type CallObserver } from '@maas/rpc';
import type { Logger } from 'pino';
import { grpcCodeName, modelOf, type RpcMetrics } from './rpc-metrics';

/** The metadata key that carries a request id from the gateway to the nodes. */
export const REQUEST_ID_HEADER = 'x-request-id';

/** Calls too frequent or too long-lived to log one line each. */
const QUIET_METHODS = new Set(['Check', 'Watch', 'ServerReflectionInfo']);

/** Codes that say the caller got something wrong (or nothing went wrong): logged at debug. */
const CLIENT_SIDE = new Set<number>([status.OK, status.INVALID_ARGUMENT, status.NOT_FOUND, status.ALREADY_EXISTS, status.CANCELLED, status.UNAUTHENTICATED, status.PERMISSION_DENIED]);

/** Warn lines per second for one method and code; past it lines are counted, and the count goes on the next one logged. */
const WARN_LINES_PER_SECOND = 10;

/**
 * Keeps a flood of one failure (overload refusals by the thousand) from costing
 * a log line each: per method and code, up to {@link WARN_LINES_PER_SECOND} a
 * second; the next line logged says how many were left out.
 */
export class WarnLimiter {
  private readonly windows = new Map<string, { second: number; lines: number; suppressed: number }>();

  /** Whether to log this one; when yes, how many were left out since the last. */
  admit(key: string, now = Date.now()): { log: boolean; suppressed: number } {
    const second = Math.floor(now / 1000);
    let window = this.windows.get(key);
    if (!window) this.windows.set(key, (window = { second, lines: 0, suppressed: 0 }));
    if (window.second !== second) {
      window.second = second;
      window.lines = 0;
    }
    if (window.lines >= WARN_LINES_PER_SECOND) {
      window.suppressed += 1;
      return { log: false, suppressed: 0 };
    }
    window.lines += 1;
    const suppressed = window.suppressed;
    window.suppressed = 0;
    return { log: true, suppressed };
  }
}

/** What {@link rpcObserver} records. */
export interface RpcInterceptorOptions {
  /** One JSON line per finished call. */
  logger?: Logger;
  /** Request counters and latency histograms. */
  metrics?: RpcMetrics;
}

/**
 * The per-call bookkeeping of a service, as a {@link CallObserver}:
 * - the request id, taken from `x-request-id` metadata or minted and set there
 *   for the handler to forward;
 * - a log line per finished call (method, model, status, duration, request id;
 *   warn for failures that are not the caller's mistake, debug otherwise);
 * - the call in {@link RpcMetrics}, labelled by method, model, version and code.
 */
export function rpcObserver(options: RpcInterceptorOptions): CallObserver {
  const { logger, metrics } = options;
  const limiter = new WarnLimiter();
  return {
    begin({ path, metadata }) {
      const method = path.slice(path.lastIndexOf('/') + 1);
      const logged = logger !== undefined && !QUIET_METHODS.has(method);
      const started = process.hrtime.bigint();
      const given = metadata.get(REQUEST_ID_HEADER)[0];
      const requestId = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
      // A missing or malformed id is replaced here, once: handlers forward what the metadata holds.
      if (requestId !== given) metadata.set(REQUEST_ID_HEADER, requestId);
      let model: string | undefined;
      let version = '';
      return {
        message(message) {
          if (model !== undefined) return;
          const named = modelOf(message);
          model = named.model;
          version = named.version;
        },
        end({ code, details, endedAt }) {
          const ns = Number((endedAt ?? process.hrtime.bigint()) - started);
          // Names a client got wrong are not labels: they would let bad input grow the series set.
          const trusted = code !== status.INVALID_ARGUMENT && code !== status.NOT_FOUND;
          metrics?.observe(method, trusted ? (model ?? '') : '', trusted ? version : '', code, ns / 1e9);
          if (!logged) return;
          const line = () => ({ requestId, method, model: model || undefined, code: grpcCodeName(code), ms: Math.round(ns / 1e4) / 100, ...(code === status.OK ? {} : { details }) });
          if (CLIENT_SIDE.has(code)) {
            if (logger.isLevelEnabled('debug')) logger.debug(line(), 'rpc');
          } else {
            const { log, suppressed } = limiter.admit(`${method}:${code}`);
            if (log) logger.warn(suppressed > 0 ? { ...line(), suppressed } : line(), 'rpc');
          }
        },
      };
    },
  };
}

/** {@link rpcObserver} as a grpc-js server interceptor, for a server with no other observer. */
export function rpcInterceptor(options: RpcInterceptorOptions): ServerInterceptor {
  return observingInterceptor([rpcObserver(options)]);
}
