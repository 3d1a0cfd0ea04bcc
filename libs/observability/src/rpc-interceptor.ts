import { randomUUID } from 'node:crypto';
import { ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';
import { callDeadlineMs } from '@maas/rpc';
import type { Logger } from 'pino';
import { grpcCodeName, modelOf, type RpcMetrics } from './rpc-metrics';

/** The metadata key that carries a request id from the gateway to the nodes. */
export const REQUEST_ID_HEADER = 'x-request-id';

/** How grpc-js words a unary or server-streaming call that ended without a request message. */
const NO_REQUEST_MESSAGE = 'Received no request message';

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

/** What {@link rpcInterceptor} records. */
export interface RpcInterceptorOptions {
  /** One JSON line per finished call. */
  logger?: Logger;
  /** Request counters and latency histograms. */
  metrics?: RpcMetrics;
}

/**
 * One grpc-js server interceptor for the per-call bookkeeping of a service:
 * - the request id, taken from `x-request-id` metadata or minted and set there
 *   for the handler to forward;
 * - a log line per finished call (method, model, status, duration, request id;
 *   warn for failures that are not the caller's mistake, debug otherwise);
 * - the call in {@link RpcMetrics}, labelled by method, model, version and code.
 * Doing all of it in one intercepting layer keeps the per-call cost to one
 * wrapper around the call, which matters on the Predict path.
 */
export function rpcInterceptor(options: RpcInterceptorOptions): ServerInterceptor {
  const { logger, metrics } = options;
  const limiter = new WarnLimiter();
  return (descriptor, call) => {
    const method = descriptor.path.slice(descriptor.path.lastIndexOf('/') + 1);
    const logged = logger !== undefined && !QUIET_METHODS.has(method);
    const started = process.hrtime.bigint();
    let requestId = '';
    let model: string | undefined;
    let version = '';
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const given = metadata.get(REQUEST_ID_HEADER)[0];
            requestId = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
            // A missing or malformed id is replaced here, once: handlers forward what the metadata holds.
            if (requestId !== given) metadata.set(REQUEST_ID_HEADER, requestId);
            nextMetadata(metadata);
          },
          onReceiveMessage: (message: unknown, nextMessage) => {
            if (model === undefined) {
              const named = modelOf(message);
              model = named.model;
              version = named.version;
            }
            nextMessage(message);
          },
        }),
      sendStatus: (statusObject, next) => {
        // grpc-js answers a unary call whose stream ended before its request message with UNIMPLEMENTED
        // ("Received no request message"): that is a client that gave up, so the call is recorded as
        // DEADLINE_EXCEEDED or CANCELLED, which is also what the client itself saw.
        if (statusObject.code === status.UNIMPLEMENTED && statusObject.details?.startsWith(NO_REQUEST_MESSAGE)) {
          statusObject = callDeadlineMs(call) <= Date.now()
            ? { ...statusObject, code: status.DEADLINE_EXCEEDED, details: 'deadline passed before the request message arrived' }
            : { ...statusObject, code: status.CANCELLED, details: 'the client cancelled before sending its request message' };
        }
        const code = statusObject.code ?? status.UNKNOWN;
        const ns = Number(process.hrtime.bigint() - started);
        // Names a client got wrong are not labels: they would let bad input grow the series set.
        const trusted = code !== status.INVALID_ARGUMENT && code !== status.NOT_FOUND;
        metrics?.observe(method, trusted ? (model ?? '') : '', trusted ? version : '', code, ns / 1e9);
        if (logged) {
          const line = () => ({ requestId, method, model: model || undefined, code: grpcCodeName(code), ms: Math.round(ns / 1e4) / 100, ...(code === status.OK ? {} : { details: statusObject.details }) });
          if (CLIENT_SIDE.has(code)) {
            if (logger.isLevelEnabled('debug')) logger.debug(line(), 'rpc');
          } else {
            const { log, suppressed } = limiter.admit(`${method}:${code}`);
            if (log) logger.warn(suppressed > 0 ? { ...line(), suppressed } : line(), 'rpc');
          }
        }
        next(statusObject);
      },
    });
  };
}
