import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { Metadata, status } from '@grpc/grpc-js';
import { beginWatches, endWatches, endWatchesOnceWritten, type CallWatch } from './call-observer';
import { FRAMES_PREFACE, FrameKind, FrameReader, parseHead, writeFrame, type AnswerFrameHead, type CallFrameHead, type HeaderBlock, type ReadFrame } from './frame-codec';
import { joinedMessage, messageLength, type MessageBytes } from './grpc-frame';
import type { ServerSurfaceCall } from './handlers';
import { serveRequest, type RawUnaryLimits, type RawUnaryRoute } from './raw-unary';

/** Options of a {@link FrameServer}. */
export interface FrameServerOptions extends RawUnaryLimits {
  /** @default 127.0.0.1 */
  host?: string;
  /** 0 picks a free port. @default 0 */
  port?: number;
  /**
   * Answers a connection may have queued for sending, in bytes, before a peer
   * that takes none of them for a second (it stopped reading: a frozen
   * gateway, say) is cut off. @default 1 GiB
   */
  maxQueuedBytes?: number;
}

/**
 * Serves unary routes (the same {@link RawUnaryRoute}s the HTTP/2 raw path
 * serves, observers included) over the node-frames protocol (see
 * frame-codec.ts): the inference node's Predict for gateways and internal
 * clients, without HTTP/2's per-call cost.
 */
export class FrameServer {
  private readonly server: Server;
  private readonly routes = new Map<string, RawUnaryRoute<unknown>>();
  private readonly connections = new Set<FrameConnection>();
  private boundPort = 0;
  /** Calls taken and connections accepted, for metrics and tests. */
  readonly stats = { calls: 0, connections: 0 };

  constructor(private readonly options: FrameServerOptions) {
    this.server = createServer((socket) => this.accept(socket));
  }

  add<Req>(route: RawUnaryRoute<Req>): this {
    this.routes.set(route.path, route as RawUnaryRoute<unknown>);
    return this;
  }

  async start(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port ?? 0, this.options.host ?? '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.boundPort = (this.server.address() as { port: number }).port;
    return this.boundPort;
  }

  get port(): number {
    return this.boundPort;
  }

  /** Connections open now. */
  get openConnections(): number {
    return this.connections.size;
  }

  /** Stops taking connections; open ones close once their calls are answered, or after `graceMs`. */
  async shutdown(graceMs = 10_000): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const connection of this.connections) connection.drain();
    const timer = setTimeout(() => this.connections.forEach((c) => c.destroy()), graceMs);
    timer.unref();
    await closed;
    clearTimeout(timer);
  }

  private accept(socket: Socket): void {
    this.stats.connections += 1;
    socket.setNoDelay(true);
    const connection = new FrameConnection(socket, this.routes, this.options, () => (this.stats.calls += 1));
    this.connections.add(connection);
    connection.start();
    socket.once('close', () => this.connections.delete(connection));
  }
}

/** How long a peer with answers over the queue bound may take none of them. */
const STALL_MS = 1000;

/** One client connection: its preface, its calls, its keepalive answers. */
class FrameConnection {
  private readonly calls = new Map<number, FrameCall<unknown>>();
  private prefaceLeft = FRAMES_PREFACE.length;
  private readonly reader: FrameReader;
  /** Shutting down: the connection ends once its calls are answered. */
  private draining = false;
  /** Bytes ever queued on the socket by this connection's frames. */
  private queued = 0;
  /** Set while the send queue is over the bound: whether the peer takes any of it within {@link STALL_MS}. */
  private stallCheck?: NodeJS.Timeout;

  constructor(
    private readonly socket: Socket,
    private readonly routes: ReadonlyMap<string, RawUnaryRoute<unknown>>,
    private readonly options: FrameServerOptions,
    private readonly counted: () => void,
  ) {
    this.reader = new FrameReader(options.maxReceiveMessageBytes, (frame) => this.frame(frame));
  }

  start(): void {
    const { socket } = this;
    socket.on('error', () => undefined); // 'close' follows
    socket.on('data', (chunk: Buffer) => this.data(chunk));
    socket.once('close', () => {
      for (const call of this.calls.values()) call.connectionLost();
      this.calls.clear();
    });
  }

  /** Sends a frame; a connection whose peer leaves too much unread is closed (see {@link FrameServerOptions.maxQueuedBytes}). */
  send(kind: FrameKind, id: number, head?: object, body?: MessageBytes): void {
    const { socket } = this;
    if (socket.destroyed) return;
    const before = socket.writableLength;
    writeFrame(socket, kind, id, head, body);
    this.queued += socket.writableLength - before;
    if (this.stallCheck || socket.writableLength <= (this.options.maxQueuedBytes ?? 2 ** 30)) return;
    // Over the bound: a burst a reading peer is taking is let be; a peer that took nothing in a second is cut off.
    const [left, queued] = [socket.writableLength, this.queued];
    this.stallCheck = setTimeout(() => {
      this.stallCheck = undefined;
      const taken = left + (this.queued - queued) - socket.writableLength;
      if (taken <= 0 && socket.writableLength > (this.options.maxQueuedBytes ?? 2 ** 30)) socket.destroy();
    }, STALL_MS);
    this.stallCheck.unref();
  }

  finished(id: number): void {
    this.calls.delete(id);
    if (this.draining && this.calls.size === 0) this.socket.end();
  }

  /** Ends the connection once its calls are answered (now, when it has none). */
  drain(): void {
    this.draining = true;
    if (this.calls.size === 0) this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }

  private data(chunk: Buffer): void {
    let bytes = chunk;
    if (this.prefaceLeft > 0) {
      const offset = FRAMES_PREFACE.length - this.prefaceLeft;
      const take = Math.min(this.prefaceLeft, bytes.length);
      if (!bytes.subarray(0, take).equals(FRAMES_PREFACE.subarray(offset, offset + take))) {
        // Not a frames client (an HTTP/2 or a stray connection): nothing it says is read.
        this.socket.destroy();
        return;
      }
      this.prefaceLeft -= take;
      bytes = bytes.subarray(take);
      if (bytes.length === 0) return;
    }
    try {
      this.reader.push(bytes);
    } catch {
      this.socket.destroy();
    }
  }

  private frame(frame: ReadFrame): void {
    switch (frame.kind) {
      case FrameKind.Call:
        return this.call(frame);
      case FrameKind.Cancel:
        this.calls.get(frame.id)?.cancelledByClient();
        return;
      case FrameKind.Ping:
        this.send(FrameKind.Pong, frame.id);
        return;
      default:
        // Frames of a later protocol revision are left unread.
        return;
    }
  }

  private call(frame: ReadFrame): void {
    const head = parseHead<CallFrameHead>(frame.head);
    const answer = (code: status, details: string) => this.send(FrameKind.Answer, frame.id, { s: code, d: details } satisfies AnswerFrameHead);
    if (!head || typeof head.p !== 'string') return answer(status.INTERNAL, 'a call frame without a readable head (path, deadline, metadata)');
    if (this.calls.has(frame.id)) return answer(status.INTERNAL, `call id ${frame.id} is already in use on this connection`);
    const route = this.routes.get(head.p);
    if (!route) return answer(status.UNIMPLEMENTED, `${head.p} is not served over node frames`);
    this.counted();
    const call = new FrameCall(this, frame.id, head, route, this.options, this.socket);
    this.calls.set(frame.id, call);
    call.run(frame);
  }
}

/** One call on a frames connection: its state from call frame to answer frame. */
class FrameCall<Req> extends EventEmitter implements ServerSurfaceCall {
  cancelled = false;
  readonly metadata: Metadata;
  private readonly deadline: number;
  private readonly method: string;
  private watches: CallWatch[] = [];
  private finished = false;
  private timer?: NodeJS.Timeout;
  private extraHeaders?: HeaderBlock;

  constructor(
    private readonly connection: FrameConnection,
    private readonly id: number,
    head: CallFrameHead,
    private readonly route: RawUnaryRoute<Req>,
    private readonly limits: RawUnaryLimits,
    private readonly socket: Socket,
  ) {
    super();
    const timeout = typeof head.t === 'number' && head.t >= 0 ? head.t : Infinity;
    this.deadline = Date.now() + timeout;
    this.method = route.path.slice(route.path.lastIndexOf('/') + 1);
    this.metadata = head.m ? Metadata.fromHttp2Headers(head.m) : new Metadata();
  }

  run(frame: ReadFrame): void {
    const begun = beginWatches(this.route.observers ?? [], { path: this.route.path, metadata: this.metadata, deadline: this.deadline }, this.method);
    if (begun.refusal) {
      this.finished = true;
      this.sendStatus(begun.refusal);
      return;
    }
    this.watches = begun.watches;
    if (frame.oversize) {
      this.fail({ code: status.RESOURCE_EXHAUSTED, details: `Received message larger than max (${frame.bodyLength} vs. ${this.limits.maxReceiveMessageBytes})` });
      return;
    }
    if (Number.isFinite(this.deadline)) this.timer = setTimeout(() => this.expire(), Math.max(0, this.deadline - Date.now()));
    serveRequest(this.route, joinedMessage(frame.body), this, this.watches, this.method, (bytes) => this.answer(bytes), (outcome) => this.fail(outcome));
  }

  getDeadline(): number {
    return this.deadline;
  }

  /** Response metadata: sent with the answer's status, as on the raw HTTP/2 route. */
  sendMetadata(metadata: Metadata): void {
    if (this.finished) return;
    this.extraHeaders = { ...this.extraHeaders, ...(metadata.toHttp2Headers() as HeaderBlock) };
  }

  getPeer(): string {
    const { remoteAddress, remotePort } = this.socket;
    if (!remoteAddress) return 'unknown';
    return remotePort ? `${remoteAddress}:${remotePort}` : remoteAddress;
  }

  /** The client sent CANCEL: nothing is answered, and the handler's work is cancelled. */
  cancelledByClient(): void {
    if (this.finished) return;
    this.settle({ code: this.deadline <= Date.now() ? status.DEADLINE_EXCEEDED : status.CANCELLED, details: 'the call ended before its status was sent' });
    this.connection.finished(this.id);
    this.cancel();
  }

  connectionLost(): void {
    this.cancelledByClient();
  }

  private answer(bytes: MessageBytes): void {
    if (this.finished) return;
    const length = messageLength(bytes);
    if (length > this.limits.maxSendMessageBytes) {
      this.fail({ code: status.RESOURCE_EXHAUSTED, details: `Sent message larger than max (${length} vs. ${this.limits.maxSendMessageBytes})` });
      return;
    }
    this.settle({ code: status.OK, details: '' }, true);
    this.connection.send(FrameKind.Answer, this.id, this.extraHeaders ? { s: 0, h: this.extraHeaders } : OK_HEAD, bytes);
    this.connection.finished(this.id);
  }

  private fail(outcome: { code: number; details: string; metadata?: Metadata | null }): void {
    if (this.finished) return;
    this.settle(outcome);
    this.sendStatus(outcome);
  }

  private sendStatus(outcome: { code: number; details: string; metadata?: Metadata | null }): void {
    const head: AnswerFrameHead = { s: outcome.code, d: outcome.details };
    if (this.extraHeaders) head.h = this.extraHeaders;
    if (outcome.metadata) head.r = outcome.metadata.toHttp2Headers() as HeaderBlock;
    this.connection.send(FrameKind.Answer, this.id, head);
    this.connection.finished(this.id);
  }

  /** Marks the call finished and tells the observers how it ended: at once, or once this turn's writes have left (see {@link afterWrites}). */
  private settle(outcome: { code: number; details: string }, afterFlush = false): void {
    this.finished = true;
    if (this.timer) clearTimeout(this.timer);
    if (afterFlush) endWatchesOnceWritten(this.watches, outcome);
    else endWatches(this.watches, outcome);
  }

  private expire(): void {
    if (this.finished) return;
    this.fail({ code: status.DEADLINE_EXCEEDED, details: 'Deadline exceeded: no answer before the caller\'s deadline' });
    this.cancel();
  }

  private cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancelled');
  }
}

const OK_HEAD: AnswerFrameHead = { s: 0 };
