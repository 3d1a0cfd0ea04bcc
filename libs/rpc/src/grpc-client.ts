import {
  credentials as grpcCredentials,
  Metadata,
  type CallOptions,
  type ChannelCredentials,
  type Client,
  type ClientOptions,
  type ClientUnaryCall,
  type ServiceError,
} from '@grpc/grpc-js';
import type { IncomingHttpHeaders } from 'node:http2';
import type { CancelSignal } from './cancellation';

/** A generated client's unary method in its fullest overload. */
export type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (err: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Per-call options of {@link callUnary}. */
export interface CallOpts {
  /** Absolute deadline, epoch milliseconds. Wins over `timeoutMs`. */
  deadlineMs?: number;
  /** Relative deadline in milliseconds. */
  timeoutMs?: number;
  metadata?: Metadata;
  /** Cancels the call when aborted. */
  signal?: CancelSignal;
}

/** The call's absolute deadline from {@link CallOpts}, epoch ms; Infinity when it has none. */
export function deadlineMsOf(opts: CallOpts): number {
  return opts.deadlineMs ?? (opts.timeoutMs !== undefined ? Date.now() + opts.timeoutMs : Infinity);
}

/** Translates {@link CallOpts} into grpc-js call options. */
export function grpcCallOptions(opts: CallOpts): Partial<CallOptions> {
  const deadline = deadlineMsOf(opts);
  return Number.isFinite(deadline) ? { deadline: new Date(deadline) } : {};
}

/**
 * Calls a unary method and returns a promise. Pass the method bound to its
 * client: `callUnary(client.getModel.bind(client), request)`.
 */
export function callUnary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req, opts: CallOpts = {}): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const call = method(request, opts.metadata ?? new Metadata(), grpcCallOptions(opts), (err, response) => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve(response);
    });
    function onAbort() {
      call.cancel();
    }
    if (opts.signal?.aborted) call.cancel();
    else opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Response header a node sets on a Predict answer: the milliseconds the
 * request waited in the node's queue before its run began. The gateway judges
 * a node's speed on the rest of the round trip, so a node that is merely busy
 * (a long queue under overload) is not taken for a slow one.
 */
export const QUEUE_MS_HEADER = 'maas-queue-ms';

/** Response header a node sets on a Predict answer: the milliseconds from its run's start to the outputs (onnxruntime and the batch split). */
export const RUN_MS_HEADER = 'maas-run-ms';

/** A millisecond figure a node reported in a Predict answer's headers, as grpc-js's Metadata or as raw HTTP/2 headers (0 when it said none). */
export function headerMsOf(headers: Metadata | IncomingHttpHeaders, name: string): number {
  const raw = headers instanceof Metadata ? headers.get(name)[0] : headers[name];
  const value = Number((Array.isArray(raw) ? raw[0] : raw) ?? 0);
  return Number.isFinite(value) && value > 0 ? value : 0;
}

/**
 * HTTP/2 receive window, bytes, for unary calls that carry large tensors:
 * Predict answers on the gateway's and Predict clients' channels, Predict
 * requests on nodes. A 1 MB tensor then arrives without waiting on a window
 * update every 64 KiB. Streaming calls (uploads, downloads) keep the 64 KiB
 * default, so HTTP/2 flow control keeps pushing back on a fast sender.
 */
export const RECEIVE_WINDOW_BYTES = 16 * 1024 * 1024;

/**
 * Default largest gRPC message a MaaS server or client sends or receives:
 * 2 GiB − 1, the most a gRPC length prefix and a protobuf `bytes` field carry,
 * and Triton's limit too, so a large batch is never refused by the transport
 * first. Operators lower it per service (`GATEWAY_MAX_MESSAGE_BYTES`,
 * `INFERENCE_MAX_MESSAGE_BYTES`) to bound memory per call.
 */
export const MAX_MESSAGE_BYTES = 2 ** 31 - 1;

/**
 * Channel options every internal client uses; `receiveWindowBytes` widens the
 * HTTP/2 receive window (see {@link RECEIVE_WINDOW_BYTES}).
 */
export function defaultClientOptions(maxMessageBytes = MAX_MESSAGE_BYTES, opts: { receiveWindowBytes?: number } = {}): ClientOptions {
  return {
    'grpc.max_receive_message_length': maxMessageBytes,
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.keepalive_time_ms': 30_000,
    'grpc.keepalive_timeout_ms': 10_000,
    'grpc.initial_reconnect_backoff_ms': 200,
    'grpc.max_reconnect_backoff_ms': 5_000,
    ...(opts.receiveWindowBytes ? { 'grpc-node.flow_control_window': opts.receiveWindowBytes } : {}),
  };
}

/** Insecure credentials unless others are given. */
export function channelCredentials(creds?: ChannelCredentials): ChannelCredentials {
  return creds ?? grpcCredentials.createInsecure();
}

/** Resolves once the client's channel is connected, or rejects at the deadline. */
export function waitForReady(client: Client, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()));
  });
}
