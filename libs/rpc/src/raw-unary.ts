import { EventEmitter } from 'node:events';
import { constants as h2, type IncomingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { Metadata, status } from '@grpc/grpc-js';
import { beginWatches, endWatches, endWatchesOnceWritten, type CallObserver, type CallWatch } from './call-observer';
import type { ServerSurfaceCall } from './handlers';
import { callStatusOf } from './status-mapper';
import { endWithMessage, messageLength, UnaryMessageReader, type MessageBytes } from './grpc-frame';

/**
 * A unary method served straight on Node's HTTP/2 stream, beside grpc-js:
 * the request message is handed over as the bytes that arrived and the answer
 * is written as the bytes the handler gives, with none of grpc-js's per-call
 * layers (interceptor chain, message queue, reassembly copies) in between.
 */
export interface RawUnaryRoute<Req> {
  /** `/package.Service/Method`. */
  path: string;
  /** Decodes the request message; a throw answers INTERNAL, as grpc-js does for a message it cannot parse. */
  decode(bytes: Buffer): Req;
  /** Answers the call with the encoded response message (or its pieces); a rejection answers through {@link toServerError}. */
  handle(request: Req, call: ServerSurfaceCall & Pick<RawUnaryCall<Req>, 'sendMetadata'>): Promise<MessageBytes>;
  /** Run on each call as on grpc-js's calls (request ids, logs, metrics, admission). @default none */
  observers?: readonly CallObserver[];
  /** Headers every answer of this route carries on HTTP/2 (where the node's frames port is, say). @default none */
  headers?: Record<string, string>;
}

/** Limits a raw route shares with its grpc-js server. */
export interface RawUnaryLimits {
  maxReceiveMessageBytes: number;
  maxSendMessageBytes: number;
}

const GRPC_TIMEOUT = /^(\d{1,8})\s*([HMSmun])$/;
const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000_001 };
/** Headers that are the transport's, not the caller's metadata. */
const TRANSPORT_HEADERS = ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type'];
/** Answers are not compressed (no grpc-encoding: identity); compressed requests are taken, by grpc-js. */
const RESPONSE_HEADERS = {
  [h2.HTTP2_HEADER_STATUS]: 200,
  [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc+proto',
  'grpc-accept-encoding': 'identity,deflate,gzip',
};
const OK_TRAILERS = { 'grpc-status': '0', 'grpc-message': '' };

/**
 * Whether a stream is one this route can serve, or is left to grpc-js (which
 * answers what the raw path does not implement: compressed requests, bad
 * content types, malformed timeouts).
 */
export function rawRouteTakes(headers: IncomingHttpHeaders): boolean {
  const contentType = headers[h2.HTTP2_HEADER_CONTENT_TYPE];
  if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) return false;
  const encoding = headers['grpc-encoding'];
  if (encoding !== undefined && encoding !== 'identity') return false;
  const timeout = headers['grpc-timeout'];
  return timeout === undefined || (typeof timeout === 'string' && GRPC_TIMEOUT.test(timeout));
}

/** The caller's `grpc-timeout` in ms; Infinity when none. */
function timeoutOf(headers: IncomingHttpHeaders): number {
  const match = typeof headers['grpc-timeout'] === 'string' ? GRPC_TIMEOUT.exec(headers['grpc-timeout']) : null;
  return match ? Math.trunc(Number(match[1]) * TIMEOUT_UNIT_MS[match[2]]) : Infinity;
}

/**
 * How long before the caller's deadline (as seen here) a call still unanswered
 * is ended with DEADLINE_EXCEEDED: this share of its timeout, at most
 * {@link DEADLINE_LEAD_MAX_MS}. The caller's own clock started when it sent
 * the call, before it got here; answered first, its client reads the status
 * instead of cancelling the stream. That matters at volume: Node's HTTP/2
 * server (nghttp2) ends a whole connection with GOAWAY(INTERNAL_ERROR) after
 * about 1,000 streams reset by the client in a burst, failing every other
 * call on it, and Node 20 offers no setting for it.
 */
export const DEADLINE_LEAD_SHARE = 0.05;
export const DEADLINE_LEAD_MAX_MS = 250;

/**
 * A raw route's work on one request message: decoded (INTERNAL when it cannot
 * be), shown to the call's watches, handled; `answer` gets the encoded answer,
 * `fail` the status of a rejection or of a handler that threw.
 */
export function serveRequest<Req>(
  route: RawUnaryRoute<Req>,
  message: Buffer,
  call: Parameters<RawUnaryRoute<Req>['handle']>[1],
  watches: readonly CallWatch[],
  method: string,
  answer: (bytes: MessageBytes) => void,
  fail: (outcome: { code: number; details: string; metadata?: Metadata | null }) => void,
): void {
  let request: Req;
  try {
    request = route.decode(message);
  } catch (err) {
    fail({ code: status.INTERNAL, details: `Error deserializing request: ${(err as Error).message}` });
    return;
  }
  for (const watch of watches) watch.message?.(request);
  let answered: Promise<MessageBytes>;
  try {
    answered = route.handle(request, call);
  } catch (err) {
    answered = Promise.reject(err);
  }
  answered.then(answer, (err: unknown) => fail(callStatusOf(err, method)));
}

/** One call on a raw route: its state from headers to trailers. */
export class RawUnaryCall<Req> extends EventEmitter implements ServerSurfaceCall {
  cancelled = false;
  readonly metadata: Metadata;
  private readonly deadline: number;
  /** When a call still unanswered is ended (epoch ms): shortly before {@link deadline}. */
  private readonly expiresAt: number;
  private readonly method: string;
  private watches: CallWatch[] = [];
  private readonly reader: UnaryMessageReader;
  private finished = false;
  private timer?: NodeJS.Timeout;
  /** Headers the handler added with {@link sendMetadata}, sent with the answer's (or the status's) headers. */
  private extraHeaders?: Record<string, string | string[]>;

  constructor(
    private readonly stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    private readonly route: RawUnaryRoute<Req>,
    private readonly limits: RawUnaryLimits,
  ) {
    super();
    const now = Date.now();
    const timeout = timeoutOf(headers);
    this.deadline = now + timeout;
    this.expiresAt = this.deadline - Math.min(DEADLINE_LEAD_MAX_MS, timeout * DEADLINE_LEAD_SHARE);
    this.method = route.path.slice(route.path.lastIndexOf('/') + 1);
    this.reader = new UnaryMessageReader(limits.maxReceiveMessageBytes, {
      compressed: 'the request message is marked compressed, but the call named no grpc-encoding',
      extra: `${this.method} is unary: it takes one request message, and more bytes followed it`,
    });
    this.metadata = Metadata.fromHttp2Headers(headers);
    for (const name of TRANSPORT_HEADERS) this.metadata.remove(name);
    if (route.headers) this.extraHeaders = { ...route.headers };
  }

  /** Starts the call: observers, deadline, then the request message. */
  run(): void {
    const { stream } = this;
    stream.on('error', () => undefined); // every error is followed by 'close', which ends the call
    stream.once('close', () => this.closed());
    const begun = beginWatches(this.route.observers ?? [], { path: this.route.path, metadata: this.metadata, deadline: this.deadline }, this.method);
    if (begun.refusal) {
      this.finished = true;
      this.respondStatus(begun.refusal);
      stream.resume();
      return;
    }
    this.watches = begun.watches;
    if (Number.isFinite(this.deadline)) {
      this.timer = setTimeout(() => this.expire(), Math.max(0, this.expiresAt - Date.now()));
    }
    stream.on('data', (chunk: Buffer) => this.data(chunk));
    stream.once('end', () => this.halfClosed());
  }

  getDeadline(): number {
    return this.deadline;
  }

  /**
   * Response metadata for the answer's headers. They go out with the answer or the status (a raw call sends one
   * header block), not at once as grpc-js's sendMetadata does; metadata given after that is dropped, as there.
   */
  sendMetadata(metadata: Metadata): void {
    if (this.finished || this.stream.headersSent) return;
    this.extraHeaders = { ...this.extraHeaders, ...(metadata.toHttp2Headers() as Record<string, string | string[]>) };
  }

  getPeer(): string {
    const socket = this.stream.session?.socket;
    if (!socket?.remoteAddress) return 'unknown';
    return socket.remotePort ? `${socket.remoteAddress}:${socket.remotePort}` : socket.remoteAddress;
  }

  private data(chunk: Buffer): void {
    if (this.finished) return;
    const problem = this.reader.push(chunk);
    if (problem) this.fail(problem);
  }

  private halfClosed(): void {
    if (this.finished) return;
    if (!this.reader.complete) {
      this.fail({ code: status.INTERNAL, details: `${this.method} is unary: the stream ended before one whole request message (${this.reader.size} bytes) arrived` });
      return;
    }
    serveRequest(this.route, this.reader.message(), this, this.watches, this.method, (bytes) => this.answer(bytes), (outcome) => this.fail(outcome));
  }

  private answer(bytes: MessageBytes): void {
    if (this.finished) return;
    // Reset by the client, its 'close' not yet delivered: nothing can be sent, so the call ends as cancelled.
    if (this.stream.destroyed || this.stream.closed) {
      this.closed();
      return;
    }
    const length = messageLength(bytes);
    if (length > this.limits.maxSendMessageBytes) {
      this.fail({ code: status.RESOURCE_EXHAUSTED, details: `Sent message larger than max (${length} vs. ${this.limits.maxSendMessageBytes})` });
      return;
    }
    this.settle({ code: status.OK, details: '' }, true);
    const { stream } = this;
    stream.respond(this.extraHeaders ? { ...this.extraHeaders, ...RESPONSE_HEADERS } : RESPONSE_HEADERS, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
    endWithMessage(stream, bytes);
  }

  /** Ends the call with an error status, sent as a trailers-only response. */
  private fail(outcome: { code: number; details: string; metadata?: Metadata | null }): void {
    if (this.finished) return;
    this.settle(outcome);
    this.respondStatus(outcome);
    // Whatever else the client sends is read and dropped.
    this.stream.resume();
  }

  private respondStatus(outcome: { code: number; details: string; metadata?: Metadata | null }): void {
    if (this.stream.destroyed || this.stream.headersSent) return;
    const extra = outcome.metadata ? outcome.metadata.toHttp2Headers() : {};
    this.stream.respond({ ...this.extraHeaders, ...RESPONSE_HEADERS, ...extra, 'grpc-status': String(outcome.code), 'grpc-message': encodeURI(outcome.details) }, { endStream: true });
  }

  /**
   * Marks the call finished and tells the observers how it ended: at once, or with `afterFlush` once this turn's
   * writes have left (see {@link afterWrites}), so an answer is not held back by the observers' work.
   */
  private settle(outcome: { code: number; details: string }, afterFlush = false): void {
    this.finished = true;
    this.reader.clear();
    if (this.timer) clearTimeout(this.timer);
    if (afterFlush) endWatchesOnceWritten(this.watches, outcome);
    else endWatches(this.watches, outcome);
  }

  /** The deadline passed before an answer: DEADLINE_EXCEEDED, and the handler's work is cancelled. */
  private expire(): void {
    if (this.finished) return;
    this.fail({ code: status.DEADLINE_EXCEEDED, details: `Deadline exceeded: no answer ${Math.round(this.deadline - this.expiresAt)} ms before the caller's deadline` });
    this.cancel();
  }

  /** The stream closed: a call not yet answered was cancelled by its client (or its connection died). */
  private closed(): void {
    if (!this.finished) {
      this.settle({ code: this.deadline <= Date.now() ? status.DEADLINE_EXCEEDED : status.CANCELLED, details: 'the call ended before its status was sent' });
      this.cancel();
    }
  }

  private cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancelled');
  }
}
