import type {
  Deadline,
  Metadata,
  handleClientStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  ServerReadableStream,
  ServerUnaryCall,
  ServerWritableStream,
} from '@grpc/grpc-js';
import { Cancellation, type CancelSignal } from './cancellation';
import { CancelledError } from './errors';
import { toServerError } from './status-mapper';

/** What every server call offers: cancellation, deadline and metadata. */
export interface ServerSurfaceCall {
  readonly cancelled: boolean;
  readonly metadata: Metadata;
  getDeadline(): Deadline;
  getPeer(): string;
  once(event: 'cancelled', listener: () => void): unknown;
}


/**
 * Adapts a promise-returning unary handler to grpc-js: resolves answer OK,
 * rejections go through {@link toServerError}.
 */
export function unary<Req, Res>(
  method: string,
  handler: (request: Req, call: ServerUnaryCall<Req, Res>) => Promise<Res>,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    // new Promise(...) also catches a handler that throws before returning its promise.
    new Promise<Res>((resolve) => resolve(handler(call.request, call))).then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServerError(err, method)),
    );
  };
}

/** Adapts a promise-returning client-streaming handler to grpc-js. */
export function clientStreaming<Req, Res>(
  method: string,
  handler: (call: ServerReadableStream<Req, Res>) => Promise<Res>,
): handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    new Promise<Res>((resolve) => resolve(handler(call))).then(
      (response) => callback(null, response),
      (err: unknown) => callback(toServerError(err, method)),
    );
  };
}

/**
 * Adapts a server-streaming handler to grpc-js: the stream ends OK when the
 * promise resolves and with the mapped status when it rejects.
 */
export function serverStreaming<Req, Res>(
  method: string,
  handler: (request: Req, call: ServerWritableStream<Req, Res>) => Promise<void>,
): handleServerStreamingCall<Req, Res> {
  return (call) => {
    new Promise<void>((resolve) => resolve(handler(call.request, call))).then(
      () => call.end(),
      (err: unknown) => {
        if (!call.cancelled) call.emit('error', toServerError(err, method));
      },
    );
  };
}

/**
 * The reason of every call signal's abort, made once: grpc-js reports
 * 'cancelled' as each call's stream closes, answered ones too, so an Error
 * made per abort (its stack captured) cost a tenth of the gateway's CPU.
 */
const CALL_ENDED = new CancelledError('the call was cancelled by the client, or has ended');

/**
 * An AbortSignal that fires when the caller cancels or its deadline passes (and, harmlessly, once the call has
 * ended), for what needs a real one (`events.once`, streams); calls themselves take {@link callCancellation}.
 */
export function callSignal(call: ServerSurfaceCall): AbortSignal {
  const controller = new AbortController();
  whenCallEnds(call, (reason) => controller.abort(reason));
  return controller.signal;
}

/** {@link callSignal} as a {@link Cancellation}: what a call's hot path hands on to the calls it makes. */
export function callCancellation(call: ServerSurfaceCall): CancelSignal {
  const cancellation = new Cancellation();
  whenCallEnds(call, (reason) => cancellation.abort(reason));
  return cancellation;
}

/** Calls `abort` once the call is cancelled or has ended: at once if it already has. */
function whenCallEnds(call: ServerSurfaceCall, abort: (reason: CancelledError) => void): void {
  if (call.cancelled) abort(CALL_ENDED);
  else call.once('cancelled', () => abort(CALL_ENDED));
}

/** The caller's deadline as epoch milliseconds, or Infinity when none was set. */
export function callDeadlineMs(call: Pick<ServerSurfaceCall, 'getDeadline'>): number {
  const deadline = call.getDeadline();
  if (deadline instanceof Date) return deadline.getTime();
  return Number.isFinite(deadline) && deadline > 0 ? deadline : Infinity;
}
