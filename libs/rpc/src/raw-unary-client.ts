import { connect as netConnect } from 'node:net';
import { connect as h2connect, constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { Metadata, status } from '@grpc/grpc-js';
import { deadlineMsOf, type CallOpts } from './grpc-client';
import { endWithMessage, joinedMessage, messageLength, UnaryMessageReader, type MessageBytes } from './grpc-frame';
import { callFailure, type CallFailure } from './status-mapper';

/** Options of a {@link RawUnaryClient}. */
export interface RawUnaryClientOptions {
  /** Largest answer message taken; a bigger one fails with RESOURCE_EXHAUSTED in grpc-js's words. */
  maxReceiveMessageBytes: number;
  /** Largest request message sent. */
  maxSendMessageBytes: number;
  /** HTTP/2 receive window of each stream and of the connection, bytes. @default 65535 */
  receiveWindowBytes?: number;
  /** A ping is sent this often while calls are outstanding. @default 30000 */
  keepaliveMs?: number;
  /** A connection whose ping goes unanswered this long is closed, failing its calls with UNAVAILABLE. @default 10000 */
  keepaliveTimeoutMs?: number;
  /** Wait after a failed connection before the next try, doubling up to {@link maxReconnectBackoffMs}. @default 200 */
  initialReconnectBackoffMs?: number;
  /** @default 5000 */
  maxReconnectBackoffMs?: number;
}

/** A unary call's answer: the response message as it arrived, and the response headers. */
export interface RawUnaryAnswer {
  /** The message as one buffer: the chunks it arrived in are joined on first read when there were several. */
  readonly message: Buffer;
  /** The message as the chunks it arrived in, uncopied: for writing it out again as it came. */
  readonly pieces: readonly Buffer[];
  readonly headers: IncomingHttpHeaders;
}

/** An answer as it arrived; one class, so the hot path's property reads stay monomorphic. */
export class ReceivedAnswer implements RawUnaryAnswer {
  private joined?: Buffer;

  constructor(
    readonly pieces: readonly Buffer[],
    readonly headers: IncomingHttpHeaders,
  ) {}

  get message(): Buffer {
    return (this.joined ??= joinedMessage(this.pieces));
  }
}

/** A failed call as grpc-js reports one: code, details and the trailers as metadata. */
export type RawCallError = CallFailure;

/** A failed call with its status and, when it came with them, the trailers (an HTTP/2 header block) as metadata. */
export function callError(code: status, details: string, trailers?: IncomingHttpHeaders): RawCallError {
  return callFailure(code, details, trailers ? Metadata.fromHttp2Headers(trailers) : undefined);
}

/**
 * What a unary client checks before it sends a call: throws the failure for
 * a message over the send limit, a call already cancelled or already past its
 * deadline; else gives the deadline (epoch ms, Infinity when none) and the ms
 * left to it. Called in a Promise executor, a throw rejects the call.
 */
export function unaryCallStart(message: MessageBytes, opts: CallOpts, maxSendBytes: number): { deadline: number; left: number } {
  const length = messageLength(message);
  if (length > maxSendBytes) throw callError(status.RESOURCE_EXHAUSTED, `Sent message larger than max (${length} vs. ${maxSendBytes})`);
  if (opts.signal?.aborted) throw callError(status.CANCELLED, 'Cancelled on client');
  const deadline = deadlineMsOf(opts);
  const left = deadline - Date.now();
  if (left <= 0) throw callError(status.DEADLINE_EXCEEDED, 'Deadline exceeded');
  return { deadline, left };
}

/** gRPC's mapping of an HTTP status that is not 200 (when no grpc-status came). */
function httpStatusCode(httpStatus: number): status {
  switch (httpStatus) {
    case 400:
      return status.INTERNAL;
    case 401:
      return status.UNAUTHENTICATED;
    case 403:
      return status.PERMISSION_DENIED;
    case 404:
      return status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return status.UNAVAILABLE;
    default:
      return status.UNKNOWN;
  }
}

/** The status a stream reset by the server (or by the transport) stands for, as grpc-js maps it. */
function resetCode(rstCode: number): { code: status; details: string } {
  switch (rstCode) {
    case h2.NGHTTP2_REFUSED_STREAM:
      return { code: status.UNAVAILABLE, details: 'Stream refused by server' };
    case h2.NGHTTP2_CANCEL:
      return { code: status.CANCELLED, details: 'Call cancelled' };
    case h2.NGHTTP2_ENHANCE_YOUR_CALM:
      return { code: status.RESOURCE_EXHAUSTED, details: 'Bandwidth exhausted or memory limit exceeded' };
    case h2.NGHTTP2_INADEQUATE_SECURITY:
      return { code: status.PERMISSION_DENIED, details: 'Protocol not secure enough' };
    default:
      return { code: status.INTERNAL, details: `Received RST_STREAM with code ${rstCode}` };
  }
}

function decodeMessage(value: string | string[] | undefined): string {
  const text = Array.isArray(value) ? value.join(',') : (value ?? '');
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** grpc-timeout: at most 8 digits, in the finest unit that fits. */
function grpcTimeout(ms: number): string {
  const whole = Math.max(1, Math.ceil(ms));
  if (whole < 1e8) return `${whole}m`;
  if (whole / 1000 < 1e8) return `${Math.ceil(whole / 1000)}S`;
  return `${Math.min(99_999_999, Math.ceil(whole / 60_000))}M`;
}

const USER_AGENT = 'maas-raw-unary/1';
/** Headers a caller's metadata may not set: they are the transport's. */
const RESERVED = new Set(['content-type', 'te', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'user-agent']);

/** One connection, the calls on it, and its keepalive. */
interface Connection {
  session: ClientHttp2Session;
  /** Set once the server said GOAWAY or the connection failed: no new call goes on it. */
  draining: boolean;
  /** Why the connection ended, for the calls it takes down. */
  failure?: string;
  calls: number;
  connected: boolean;
  pingTimer?: NodeJS.Timeout;
}

/**
 * A gRPC unary client on one `node:http2` connection per address, for hot
 * calls whose messages the caller already holds encoded: the request goes out
 * as its headers, the message and END_STREAM in one write, and the answer comes
 * back as the bytes that arrived, with none of grpc-js's per-call layers
 * (interceptors, filters, resolvers, Metadata objects) in between. Failures
 * read as grpc-js's do (status codes, `details`, trailers as `metadata`), so
 * retry and failover code treats both alike. Insecure connections only.
 */
export class RawUnaryClient {
  private connection?: Connection;
  private closed = false;
  private lastFailure = '';
  private retryAt = 0;
  private backoffMs: number;
  private readonly host: string;
  private readonly port: number;

  constructor(
    readonly address: string,
    private readonly options: RawUnaryClientOptions,
  ) {
    // host:port, an IPv6 host in brackets; a target in any other form (a resolver's URI) is not dialled here.
    const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d+)$/.exec(address);
    this.host = match?.[1] ?? match?.[2] ?? '';
    this.port = Number(match?.[3]);
    if (!match || this.port <= 0 || this.port > 65535) throw new Error(`RawUnaryClient needs host:port, got "${address}"`);
    this.backoffMs = options.initialReconnectBackoffMs ?? 200;
  }

  /**
   * Calls `path` with an encoded request message (one buffer, or pieces sent uncopied). Resolves with the encoded
   * answer; rejects with a {@link RawCallError}: DEADLINE_EXCEEDED at the
   * deadline, CANCELLED when the signal aborts, UNAVAILABLE when the connection
   * cannot be made or drops, and the server's status otherwise.
   */
  call(path: string, message: MessageBytes, opts: CallOpts = {}): Promise<RawUnaryAnswer> {
    return new Promise<RawUnaryAnswer>((resolve, reject) => {
      // Either throws (rejecting the call) before anything is sent.
      const { deadline, left } = unaryCallStart(message, opts, this.options.maxSendMessageBytes);
      const connection = this.connectionForCall();
      const headers: Record<string, string | string[] | number> = {
        [h2.HTTP2_HEADER_METHOD]: 'POST',
        [h2.HTTP2_HEADER_PATH]: path,
        [h2.HTTP2_HEADER_CONTENT_TYPE]: 'application/grpc',
        te: 'trailers',
        'grpc-accept-encoding': 'identity',
        'user-agent': USER_AGENT,
      };
      if (Number.isFinite(deadline)) headers['grpc-timeout'] = grpcTimeout(left);
      if (opts.metadata) {
        for (const [name, value] of Object.entries(opts.metadata.toHttp2Headers())) if (!RESERVED.has(name) && value !== undefined) headers[name] = value as string | string[];
      }
      let stream: ClientHttp2Stream;
      try {
        stream = connection.session.request(headers, { endStream: false });
      } catch (err) {
        // The session closed under us (GOAWAY or an error not yet delivered): the call never left.
        connection.draining = true;
        reject(callError(status.UNAVAILABLE, `cannot start a call to ${this.address}: ${(err as Error).message}`));
        return;
      }
      this.track(connection, 1);
      new PendingCall(stream, connection, this.options.maxReceiveMessageBytes, deadline, opts, (outcome) => {
        this.track(connection, -1);
        if (!('error' in outcome)) resolve(outcome);
        else reject(outcome.error);
      }).start(message);
    });
  }

  /** Closes the connection; calls still running on it finish, new ones fail with UNAVAILABLE. */
  close(): void {
    this.closed = true;
    const connection = this.connection;
    this.connection = undefined;
    if (!connection) return;
    connection.draining = true;
    if (connection.calls === 0) this.end(connection);
    else connection.session.close();
  }

  /** The live connection, or a new one; throws UNAVAILABLE while a failed connection's backoff runs. */
  private connectionForCall(): Connection {
    if (this.closed) throw callError(status.UNAVAILABLE, `the client of ${this.address} is closed`);
    const current = this.connection;
    if (current && !current.draining) return current;
    if (Date.now() < this.retryAt) {
      throw callError(status.UNAVAILABLE, `no connection to ${this.address}: ${this.lastFailure} (next try in ${this.retryAt - Date.now()} ms)`);
    }
    return (this.connection = this.open());
  }

  private open(): Connection {
    const window = this.options.receiveWindowBytes;
    const session = h2connect(`http://${this.address}`, {
      createConnection: () => netConnect({ host: this.host, port: this.port, noDelay: true }),
      settings: { enablePush: false, ...(window ? { initialWindowSize: Math.min(window, 2 ** 31 - 1) } : {}) },
      maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
      // Node's default (10 MB of frames queued per connection) resets streams under load with large tensors;
      // what is in flight is bounded by the caller's admission instead, as grpc-js does.
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
    });
    session.unref();
    const connection: Connection = { session, draining: false, calls: 0, connected: false };
    session.once('connect', () => {
      connection.connected = true;
      this.backoffMs = this.options.initialReconnectBackoffMs ?? 200;
      this.retryAt = 0;
      if (window && window > 65_535) {
        try {
          session.setLocalWindowSize(Math.min(window, 2 ** 31 - 1));
        } catch {
          // A session closing meanwhile: its calls fail on their own.
        }
      }
    });
    session.on('goaway', () => {
      connection.draining = true;
      connection.failure ??= 'the server closed the connection (GOAWAY)';
    });
    session.on('error', (err: Error) => {
      connection.failure = `${(err as NodeJS.ErrnoException).code ?? 'error'}: ${err.message}`;
      if (connection.connected) return;
      // The connection was never made: back off before the next try, as grpc-js does.
      this.lastFailure = `connection failed: ${connection.failure}`;
      this.retryAt = Date.now() + this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxReconnectBackoffMs ?? 5000);
    });
    session.once('close', () => {
      connection.draining = true;
      connection.failure ??= 'connection closed';
      clearInterval(connection.pingTimer);
      if (this.connection === connection) this.connection = undefined;
    });
    return connection;
  }

  /** Counts a connection's calls; keepalive pings run while it has any (ref'd, so a pending call keeps Node up). */
  private track(connection: Connection, delta: number): void {
    connection.calls += delta;
    const { session } = connection;
    if (connection.calls === 1 && delta > 0) {
      session.ref();
      const every = this.options.keepaliveMs ?? 30_000;
      if (every > 0 && !connection.pingTimer) {
        connection.pingTimer = setInterval(() => this.ping(connection), every);
        connection.pingTimer.unref();
      }
    } else if (connection.calls === 0) {
      session.unref();
      clearInterval(connection.pingTimer);
      connection.pingTimer = undefined;
      if (connection.draining && this.connection !== connection) this.end(connection);
    }
  }

  private ping(connection: Connection): void {
    const { session } = connection;
    if (session.destroyed || session.closed) return;
    const timeoutMs = this.options.keepaliveTimeoutMs ?? 10_000;
    const timer = setTimeout(() => {
      connection.failure = `keepalive ping unanswered for ${timeoutMs} ms`;
      connection.draining = true;
      session.destroy();
    }, timeoutMs);
    timer.unref();
    try {
      session.ping(() => clearTimeout(timer));
    } catch {
      clearTimeout(timer);
    }
  }

  private end(connection: Connection): void {
    clearInterval(connection.pingTimer);
    if (!connection.session.destroyed) connection.session.close();
  }
}

type Outcome = RawUnaryAnswer | { error: RawCallError };

/** One call on a raw connection, from its request to its status. */
class PendingCall {
  private readonly reader: UnaryMessageReader;
  private headers?: IncomingHttpHeaders;
  private trailers?: IncomingHttpHeaders;
  /** The stream's error, when it was the connection's (refused, reset, closed) rather than a reset of this stream. */
  private connectionError?: NodeJS.ErrnoException;
  private done = false;
  private timer?: NodeJS.Timeout;
  private readonly onAbort = () => this.abort(status.CANCELLED, 'Cancelled on client');

  constructor(
    private readonly stream: ClientHttp2Stream,
    private readonly connection: Connection,
    maxReceive: number,
    private readonly deadline: number,
    private readonly opts: CallOpts,
    private readonly settle: (outcome: Outcome) => void,
  ) {
    this.reader = new UnaryMessageReader(maxReceive, {
      compressed: 'the answer message is marked compressed, but this client accepts only identity (grpc-accept-encoding)',
      extra: 'the server answered a unary call with more than one message',
    });
  }

  start(message: MessageBytes): void {
    const { stream } = this;
    if (Number.isFinite(this.deadline)) this.timer = setTimeout(() => this.abort(status.DEADLINE_EXCEEDED, 'Deadline exceeded'), Math.max(0, this.deadline - Date.now()));
    this.opts.signal?.addEventListener('abort', this.onAbort, { once: true });
    stream.on('response', (headers) => this.response(headers));
    stream.on('data', (chunk: Buffer) => this.data(chunk));
    stream.on('trailers', (trailers) => (this.trailers = trailers));
    stream.once('end', () => this.ended());
    // Every error is followed by 'close', which reads the reset code; a stream-level reset shows there.
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'ERR_HTTP2_STREAM_ERROR') this.connectionError = err;
    });
    stream.once('close', () => this.closed());
    endWithMessage(stream, message);
  }

  private response(headers: IncomingHttpHeaders): void {
    this.headers = headers;
    // Trailers-Only: the status came in the headers, and nothing else follows.
    if (headers['grpc-status'] !== undefined) this.trailers = headers;
  }

  private data(chunk: Buffer): void {
    if (this.done) return;
    const problem = this.reader.push(chunk);
    if (problem) this.abort(problem.code, problem.details);
  }

  /** The server ended its side: the status is in the trailers (or the headers, Trailers-Only). */
  private ended(): void {
    if (this.done) return;
    const trailers = this.trailers;
    if (!trailers) return; // 'close' says what happened
    const code = Number(trailers['grpc-status']);
    if (!Number.isInteger(code) || code < 0 || code > 16) {
      this.finish({ error: callError(status.UNKNOWN, `the server sent an invalid grpc-status "${String(trailers['grpc-status'])}"`, trailers) });
      return;
    }
    if (code !== status.OK) {
      this.finish({ error: callError(code, decodeMessage(trailers['grpc-message']), trailers) });
      return;
    }
    if (!this.reader.complete) {
      this.finish({ error: callError(status.UNIMPLEMENTED, `the server answered OK without a whole response message (${this.reader.size} bytes)`, trailers) });
      return;
    }
    this.finish(new ReceivedAnswer(this.reader.pieces(), this.headers ?? {}));
  }

  private closed(): void {
    if (this.done) return;
    // Trailers delivered with the close ('end' not yet emitted): the status is known.
    if (this.trailers) {
      this.ended();
      if (this.done) return;
    }
    const httpStatus = Number(this.headers?.[h2.HTTP2_HEADER_STATUS] ?? 0);
    if (httpStatus && httpStatus !== 200) {
      this.finish({ error: callError(httpStatusCode(httpStatus), `the server answered HTTP ${httpStatus} without a gRPC status`) });
      return;
    }
    const { connection } = this;
    const rstCode = this.stream.rstCode ?? h2.NGHTTP2_NO_ERROR;
    // A connection that failed or dropped shows as a cancelled (or errored) stream: say UNAVAILABLE, as grpc-js does.
    // A socket that closed under the session (a killed server sends no GOAWAY) closes its streams with CANCEL
    // before the session's own 'close' event sets the connection's failure.
    const { session } = connection;
    const socketGone = session.closed || session.destroyed || !!session.socket?.destroyed;
    const lost = this.connectionError
      ? `${this.connectionError.code ?? 'error'}: ${this.connectionError.message}`
      : (connection.failure ?? (socketGone ? 'the connection closed without a GOAWAY' : undefined));
    if (lost && (rstCode === h2.NGHTTP2_CANCEL || rstCode === h2.NGHTTP2_INTERNAL_ERROR || rstCode === h2.NGHTTP2_NO_ERROR)) {
      this.finish({ error: callError(status.UNAVAILABLE, `connection to the server ${connection.connected ? 'lost' : 'failed'}: ${lost}`) });
      return;
    }
    if (rstCode === h2.NGHTTP2_NO_ERROR) {
      this.finish({ error: callError(status.INTERNAL, 'the stream ended without a gRPC status') });
      return;
    }
    const mapped = resetCode(rstCode);
    this.finish({ error: callError(mapped.code, mapped.details) });
  }

  /** Ends the call from this side: the stream is reset (CANCEL) and the call fails with `code`. */
  private abort(code: status, details: string): void {
    if (this.done) return;
    this.finish({ error: callError(code, details) });
    if (!this.stream.destroyed) this.stream.close(h2.NGHTTP2_CANCEL);
  }

  private finish(outcome: Outcome): void {
    this.done = true;
    this.reader.clear();
    clearTimeout(this.timer);
    this.opts.signal?.removeEventListener('abort', this.onAbort);
    this.settle(outcome);
  }
}
