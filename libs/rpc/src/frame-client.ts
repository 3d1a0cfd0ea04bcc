import { connect, type Socket } from 'node:net';
import { status } from '@grpc/grpc-js';
import { FRAMES_PREFACE, FrameKind, FrameReader, parseHead, writeFrame, type AnswerFrameHead, type CallFrameHead, type HeaderBlock, type ReadFrame } from './frame-codec';
import type { CallOpts } from './grpc-client';
import type { MessageBytes } from './grpc-frame';
import { callError, ReceivedAnswer, unaryCallStart, type RawCallError, type RawUnaryAnswer } from './raw-unary-client';

/** Options of a {@link FrameUnaryClient}. */
export interface FrameClientOptions {
  /** Largest answer message taken; a bigger one fails with RESOURCE_EXHAUSTED in grpc-js's words. */
  maxReceiveMessageBytes: number;
  /** Largest request message sent. */
  maxSendMessageBytes: number;
  /** A ping is sent this often while calls are outstanding. @default 30000 */
  keepaliveMs?: number;
  /** A connection whose ping goes unanswered this long is closed, failing its calls with UNAVAILABLE. @default 10000 */
  keepaliveTimeoutMs?: number;
  /** A connection not made within this long counts as failed (its calls never left). @default 1000 */
  connectTimeoutMs?: number;
  /** Wait after a failed connection before the next try, doubling up to {@link maxReconnectBackoffMs}. @default 200 */
  initialReconnectBackoffMs?: number;
  /** @default 5000 */
  maxReconnectBackoffMs?: number;
}

/**
 * A call that failed because no connection could be made: its request never
 * left this process, so it may be sent another way (see {@link neverSent}).
 */
type UnsentCallError = RawCallError & { neverSent: true };

/** Whether a call failed before any of it reached the server (no connection could be made). */
export function neverSent(err: unknown): boolean {
  return (err as Partial<UnsentCallError> | undefined)?.neverSent === true;
}

/** One connection and the calls on it. */
interface Link {
  socket: Socket;
  reader: FrameReader;
  calls: Map<number, PendingFrameCall>;
  connected: boolean;
  /** No new call goes on it (it failed, or the client closed). */
  draining: boolean;
  failure?: string;
  pingTimer?: NodeJS.Timeout;
  pongTimer?: NodeJS.Timeout;
}

/** One call on a link, from its call frame to its answer frame. */
interface PendingFrameCall {
  settle(outcome: RawUnaryAnswer | RawCallError): void;
}

/**
 * A unary client on the node-frames protocol (frame-codec.ts): one TCP
 * connection per address, every call a frame each way, answers matched by
 * call id. The same contract as {@link RawUnaryClient.call}: the answer as the
 * bytes that arrived, failures read as grpc-js's (DEADLINE_EXCEEDED at the
 * deadline, CANCELLED on abort, UNAVAILABLE when the connection drops, the
 * server's status otherwise), so retry and failover treat both alike.
 */
export class FrameUnaryClient {
  private link?: Link;
  private closed = false;
  private nextId = 1;
  private retryAt = 0;
  private lastFailure = '';
  private backoffMs: number;

  constructor(
    readonly host: string,
    readonly port: number,
    private readonly options: FrameClientOptions,
  ) {
    this.backoffMs = options.initialReconnectBackoffMs ?? 200;
  }

  get address(): string {
    return this.host.includes(':') ? `[${this.host}]:${this.port}` : `${this.host}:${this.port}`;
  }

  /**
   * Whether a call now would go on a connection already made. With none, a
   * connection is started in the background (unless a failed one's backoff
   * runs): a caller that sends another way meanwhile never waits on a connect
   * (a firewalled port takes its whole connect timeout to fail).
   */
  get usable(): boolean {
    if (this.closed) return false;
    const link = this.link;
    if (link) return link.connected && !link.draining;
    if (Date.now() >= this.retryAt) this.link = this.open();
    return false;
  }

  call(path: string, message: MessageBytes, opts: CallOpts = {}): Promise<RawUnaryAnswer> {
    return new Promise<RawUnaryAnswer>((resolve, reject) => {
      // Either throws (rejecting the call) before anything is sent.
      const { deadline, left } = unaryCallStart(message, opts, this.options.maxSendMessageBytes);
      const link = this.linkForCall();
      const id = this.takeId(link);
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => giveUp(status.CANCELLED, 'Cancelled on client');
      const pending: PendingFrameCall = {
        settle: (outcome) => {
          if (!link.calls.delete(id)) return;
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
          this.track(link);
          if (outcome instanceof Error) reject(outcome);
          else resolve(outcome);
        },
      };
      const giveUp = (code: status, details: string) => {
        if (!link.calls.has(id)) return;
        pending.settle(callError(code, details));
        if (!link.socket.destroyed) writeFrame(link.socket, FrameKind.Cancel, id);
      };
      link.calls.set(id, pending);
      this.track(link);
      if (Number.isFinite(deadline)) timer = setTimeout(() => giveUp(status.DEADLINE_EXCEEDED, 'Deadline exceeded'), left);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const head: CallFrameHead = { p: path };
      if (Number.isFinite(deadline)) head.t = Math.max(1, Math.ceil(left));
      if (opts.metadata) head.m = opts.metadata.toHttp2Headers() as HeaderBlock;
      writeFrame(link.socket, FrameKind.Call, id, head, message);
    });
  }

  /** Closes the connection once its calls are answered; new calls fail with UNAVAILABLE. */
  close(): void {
    this.closed = true;
    const link = this.link;
    this.link = undefined;
    if (!link) return;
    link.draining = true;
    if (link.calls.size === 0) link.socket.end();
  }

  private takeId(link: Link): number {
    let id = this.nextId;
    while (link.calls.has(id)) id = id >= 0xffff_ffff ? 1 : id + 1;
    this.nextId = id >= 0xffff_ffff ? 1 : id + 1;
    return id;
  }

  private linkForCall(): Link {
    if (this.closed) throw callError(status.UNAVAILABLE, `the frames client of ${this.address} is closed`);
    const current = this.link;
    if (current && !current.draining) return current;
    if (Date.now() < this.retryAt) {
      throw Object.assign(callError(status.UNAVAILABLE, `no frames connection to ${this.address}: ${this.lastFailure} (next try in ${this.retryAt - Date.now()} ms)`), { neverSent: true as const });
    }
    return (this.link = this.open());
  }

  private open(): Link {
    const reader = new FrameReader(this.options.maxReceiveMessageBytes, (frame) => this.frame(link, frame));
    // Answers are read into place (see FrameReader.readInto): no buffer per socket read, one per large answer.
    const onread = {
      buffer: () => reader.nextReadBuffer(),
      callback: (n: number, buffer: Uint8Array) => {
        try {
          reader.readInto(n, buffer);
        } catch (err) {
          link.failure = `the server broke the frames protocol: ${(err as Error).message}`;
          socket.destroy();
        }
        return true;
      },
    };
    const socket = connect({ host: this.host, port: this.port, noDelay: true, onread });
    const link: Link = { socket, calls: new Map(), connected: false, draining: false, reader };
    socket.write(FRAMES_PREFACE);
    const connectTimer = setTimeout(() => {
      link.failure = `not connected within ${this.options.connectTimeoutMs ?? 1000} ms`;
      socket.destroy();
    }, this.options.connectTimeoutMs ?? 1000);
    socket.once('connect', () => {
      clearTimeout(connectTimer);
      link.connected = true;
      this.backoffMs = this.options.initialReconnectBackoffMs ?? 200;
      this.retryAt = 0;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      link.failure ??= `${err.code ?? 'error'}: ${err.message}`;
    });
    socket.once('close', () => {
      clearTimeout(connectTimer);
      this.stopKeepalive(link);
      link.draining = true;
      if (this.link === link) this.link = undefined;
      const why = link.failure ?? 'connection closed';
      if (!link.connected) {
        // Never made: back off before the next try, and say the calls never left.
        this.lastFailure = `connection failed: ${why}`;
        this.retryAt = Date.now() + this.backoffMs;
        this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxReconnectBackoffMs ?? 5000);
      }
      for (const call of [...link.calls.values()]) {
        const failure = callError(status.UNAVAILABLE, `connection to the server ${link.connected ? 'lost' : 'failed'}: ${why}`);
        call.settle(link.connected ? failure : Object.assign(failure, { neverSent: true as const }));
      }
    });
    socket.unref();
    return link;
  }

  private frame(link: Link, frame: ReadFrame): void {
    if (frame.kind === FrameKind.Pong) {
      clearTimeout(link.pongTimer);
      link.pongTimer = undefined;
      return;
    }
    if (frame.kind !== FrameKind.Answer) return;
    const call = link.calls.get(frame.id);
    if (!call) return; // given up on already
    const head = parseHead<AnswerFrameHead>(frame.head);
    if (!head || typeof head.s !== 'number' || !Number.isInteger(head.s) || head.s < 0 || head.s > 16) {
      call.settle(callError(status.UNKNOWN, 'the server sent an answer frame without a valid status'));
      return;
    }
    if (head.s !== status.OK) {
      call.settle(callError(head.s, head.d ?? '', head.r));
      return;
    }
    if (frame.oversize) {
      call.settle(callError(status.RESOURCE_EXHAUSTED, `Received message larger than max (${frame.bodyLength} vs. ${this.options.maxReceiveMessageBytes})`));
      return;
    }
    call.settle(new ReceivedAnswer(frame.body, head.h ?? {}));
  }

  /** Keeps the process up and pings while a link has calls; lets it go once idle. */
  private track(link: Link): void {
    if (link.calls.size > 0) {
      link.socket.ref();
      const every = this.options.keepaliveMs ?? 30_000;
      if (every > 0 && !link.pingTimer) {
        link.pingTimer = setInterval(() => this.ping(link), every);
        link.pingTimer.unref();
      }
      return;
    }
    link.socket.unref();
    this.stopKeepalive(link);
    if (link.draining && this.link !== link && !link.socket.destroyed) link.socket.end();
  }

  private ping(link: Link): void {
    if (link.socket.destroyed || link.pongTimer || !link.connected) return;
    const timeoutMs = this.options.keepaliveTimeoutMs ?? 10_000;
    link.pongTimer = setTimeout(() => {
      link.failure = `keepalive ping unanswered for ${timeoutMs} ms`;
      link.socket.destroy();
    }, timeoutMs);
    link.pongTimer.unref();
    writeFrame(link.socket, FrameKind.Ping, 0);
  }

  private stopKeepalive(link: Link): void {
    clearInterval(link.pingTimer);
    clearTimeout(link.pongTimer);
    link.pingTimer = undefined;
    link.pongTimer = undefined;
  }
}
