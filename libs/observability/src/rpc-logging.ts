import { randomUUID } from 'node:crypto';
import { ServerInterceptingCall, status, type ServerInterceptor } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { grpcCodeName, modelOf } from './rpc-metrics';

/** The metadata key that carries a request id from the gateway to the nodes. */
export const REQUEST_ID_HEADER = 'x-request-id';

const QUIET_METHODS = new Set(['Check', 'Watch', 'ServerReflectionInfo']);

/**
 * A grpc-js server interceptor writing one JSON log line per finished call:
 * method, model, status code, duration and the request id taken from
 * `x-request-id` metadata (minted when absent). Failures other than client
 * mistakes log at warn, everything else at debug.
 */
export function rpcLoggingInterceptor(logger: Logger): ServerInterceptor {
  return (descriptor, call) => {
    const method = descriptor.path.slice(descriptor.path.lastIndexOf('/') + 1);
    if (QUIET_METHODS.has(method)) return new ServerInterceptingCall(call);
    const started = process.hrtime.bigint();
    let requestId = '';
    let model: string | undefined;
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const given = metadata.get(REQUEST_ID_HEADER)[0];
            requestId = typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
            if (!given) metadata.set(REQUEST_ID_HEADER, requestId);
            nextMetadata(metadata);
          },
          onReceiveMessage: (message: unknown, nextMessage) => {
            if (model === undefined) model = modelOf(message).model || undefined;
            nextMessage(message);
          },
        }),
      sendStatus: (statusObject, next) => {
        const code = statusObject.code ?? status.UNKNOWN;
        const ms = Number(process.hrtime.bigint() - started) / 1e6;
        const clientMistake = [status.OK, status.INVALID_ARGUMENT, status.NOT_FOUND, status.ALREADY_EXISTS, status.CANCELLED, status.UNAUTHENTICATED, status.PERMISSION_DENIED].includes(code);
        const line = { requestId, method, model, code: grpcCodeName(code), ms: Math.round(ms * 100) / 100, ...(code === status.OK ? {} : { details: statusObject.details }) };
        if (clientMistake) logger.debug(line, 'rpc');
        else logger.warn(line, 'rpc');
        next(statusObject);
      },
    });
  };
}
