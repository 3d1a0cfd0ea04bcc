import type { Socket } from 'node:net';
import type { MessageBytes } from './grpc-frame';

/**
 * The node-frames protocol: unary calls between a gateway (or an internal
 * client) and an inference node on a plain TCP connection, many calls at once,
 * each frame
 *
 *     kind u8 | call id u32 | head length u32 | body length u32 | head | body
 *
 * big-endian, with the head a small JSON object and the body a message's
 * bytes. It carries what the raw HTTP/2 route carries (path, deadline,
 * metadata; status, details, headers and trailers; one message each way)
 * without HTTP/2's per-call stream, header blocks and 16 KB DATA frames.
 * A client opens each connection with {@link FRAMES_PREFACE}.
 */
export const FRAMES_PREFACE = Buffer.from('MAAS-FRAMES/1\n', 'latin1');

/**
 * Response header of a node's Predict over HTTP/2 offering its frames server:
 * `<port>@<host:port>`, the frames port and the gRPC address the node
 * advertises. A client that dialled exactly that address (the node itself,
 * not a proxy in front of it) may send the node's next calls to the frames
 * port on the same host; see {@link framesPortOffered}.
 */
export const FRAMES_HEADER = 'maas-frames';

/** The frames port a node's {@link FRAMES_HEADER} offers to a client that dialled `dialled`; undefined when none is offered to it. */
export function framesPortOffered(header: string | string[] | undefined, dialled: string): number | undefined {
  if (typeof header !== 'string') return undefined;
  const at = header.indexOf('@');
  if (at <= 0 || header.slice(at + 1) !== dialled) return undefined;
  const port = Number(header.slice(0, at));
  return Number.isInteger(port) && port > 0 && port <= 65535 ? port : undefined;
}

/** Frame kinds. */
export const enum FrameKind {
  /** A call: head {@link CallFrameHead}, body the request message. */
  Call = 1,
  /** The client gave up on a call (deadline, cancellation): no head, no body. */
  Cancel = 2,
  /** A call's end: head {@link AnswerFrameHead}, body the response message when the status is OK. */
  Answer = 3,
  /** Keepalive, answered with {@link Pong} of the same id. */
  Ping = 4,
  Pong = 5,
}

/** Bytes before a frame's head. */
export const FRAME_HEADER_BYTES = 13;
/** Largest head taken: a call's metadata, an answer's headers and trailers. */
export const MAX_HEAD_BYTES = 1024 * 1024;

/** A header block as node:http2 gives it (and Metadata.toHttp2Headers makes it). */
export type HeaderBlock = Record<string, string | string[]>;

/** What a call says besides its message. */
export interface CallFrameHead {
  /** `/package.Service/Method`. */
  p: string;
  /** Time left to the caller's deadline when sent, ms; absent when none. */
  t?: number;
  /** The caller's metadata. */
  m?: HeaderBlock;
}

/** How a call ended. */
export interface AnswerFrameHead {
  /** gRPC status code. */
  s: number;
  /** Its message (empty for OK). */
  d?: string;
  /** Response headers (response metadata). */
  h?: HeaderBlock;
  /** Trailers of a failed call. */
  r?: HeaderBlock;
}

const CORKED = Symbol('corked until the next tick');

/**
 * Holds a socket's writes until the current tick ends, so every frame written
 * in one turn of the event loop (the answers of one batch, the calls a router
 * sends in one turn) leaves in one vectored write, as HTTP/2 sends its
 * streams' frames.
 */
function corkForTick(socket: Socket & { [CORKED]?: boolean }): void {
  if (socket[CORKED]) return;
  socket[CORKED] = true;
  socket.cork();
  process.nextTick(() => {
    socket[CORKED] = false;
    socket.uncork();
  });
}

/**
 * Writes one frame: its 13 bytes and head in one buffer, the body's pieces
 * after it uncopied; the socket's writes of the tick leave together.
 */
export function writeFrame(socket: Socket, kind: FrameKind, id: number, head?: object, body?: MessageBytes): void {
  const headBytes = head ? Buffer.from(JSON.stringify(head), 'utf8') : undefined;
  const headLength = headBytes?.length ?? 0;
  const pieces = body === undefined ? [] : Buffer.isBuffer(body) ? [body] : body;
  let bodyLength = 0;
  for (const piece of pieces) bodyLength += piece.length;
  const first = Buffer.allocUnsafe(FRAME_HEADER_BYTES + headLength);
  first[0] = kind;
  first.writeUInt32BE(id, 1);
  first.writeUInt32BE(headLength, 5);
  first.writeUInt32BE(bodyLength, 9);
  headBytes?.copy(first, FRAME_HEADER_BYTES);
  corkForTick(socket);
  socket.write(first);
  for (const piece of pieces) if (piece.length > 0) socket.write(piece);
}

/** One frame as read: its head (parsed by the taker) and its body as the chunks it arrived in, uncopied. */
export interface ReadFrame {
  kind: number;
  id: number;
  head?: Buffer;
  /** The body's pieces; empty when it had none or was over the limit (see {@link bodyLength}). */
  body: Buffer[];
  bodyLength: number;
  /** The body was over the reader's limit: it was read and dropped. */
  oversize: boolean;
}

/** A body at least this large is read by a {@link FrameReader} in read-into mode straight into its own buffer. */
const DIRECT_BODY_BYTES = 32 * 1024;
/** The buffer a read-into reader reads into between large bodies. */
const SCRATCH_BYTES = 128 * 1024;

/**
 * Cuts a connection's bytes into frames. A body over `maxBodyBytes` is
 * skipped and its frame marked oversize, so the connection stays usable. A
 * head over {@link MAX_HEAD_BYTES} is a protocol error: `push` and `readInto`
 * throw.
 *
 * Two ways to feed it. {@link push} takes a socket's `data` chunks and gives
 * bodies as slices of them (no copy). {@link nextReadBuffer} and
 * {@link readInto} serve a socket's `onread` option: a large body is read
 * straight into a buffer of its own, sized from its frame, and everything
 * else into one scratch buffer reused for every read (copied out of it). That
 * way a connection carrying megabyte answers makes no buffer per socket read,
 * and each read can take all the bytes the kernel holds, not 64 KiB.
 */
export class FrameReader {
  /** A frame's first bytes while they do not yet hold its head (owned, never a borrowed chunk). */
  private partial?: Buffer;
  /** The frame being read, once its 13 bytes and head are in. */
  private current?: ReadFrame;
  private bodyLeft = 0;
  /** Read-into mode: the current frame's body, read into in place, and how much of it is in. */
  private direct?: Buffer;
  private filled = 0;
  private scratch?: Buffer;

  constructor(
    private readonly maxBodyBytes: number,
    private readonly onFrame: (frame: ReadFrame) => void,
  ) {}

  /** Takes a chunk the reader may keep slices of. */
  push(chunk: Buffer): void {
    this.take(chunk, false);
  }

  /** For a socket's `onread.buffer`: where the next read should put its bytes. */
  nextReadBuffer(): Buffer {
    if (this.direct && this.bodyLeft > 0) return this.direct.subarray(this.filled);
    return (this.scratch ??= Buffer.allocUnsafeSlow(SCRATCH_BYTES));
  }

  /** For a socket's `onread.callback`: `n` bytes were read into `buffer`, the last {@link nextReadBuffer}. */
  readInto(n: number, buffer: Uint8Array): void {
    if (buffer !== this.scratch) {
      this.filled += n;
      this.bodyLeft -= n;
      if (this.bodyLeft === 0) this.emit();
      return;
    }
    this.take(this.scratch.subarray(0, n), true);
  }

  /** Cuts `chunk` into frames; a `transient` chunk is reused once this returns, so what is kept of it is copied. */
  private take(chunk: Buffer, transient: boolean): void {
    let rest = chunk;
    let borrowed = transient;
    while (rest.length > 0) {
      const frame = this.current;
      if (frame) {
        const take = Math.min(this.bodyLeft, rest.length);
        if (!frame.oversize) {
          const piece = take === rest.length ? rest : rest.subarray(0, take);
          if (this.direct) this.filled += piece.copy(this.direct, this.filled);
          else frame.body.push(borrowed ? Buffer.from(piece) : piece);
        }
        this.bodyLeft -= take;
        rest = rest.subarray(take);
        if (this.bodyLeft === 0) this.emit();
        continue;
      }
      if (!this.partial && this.whole(rest)) {
        rest = this.start(rest, borrowed);
        continue;
      }
      // A frame's first bytes split across reads: gather them (owned) until they hold its head.
      const gathered = this.partial ? Buffer.concat([this.partial, rest]) : borrowed ? Buffer.from(rest) : rest;
      this.partial = gathered;
      if (!this.whole(gathered)) return;
      this.partial = undefined;
      rest = this.start(gathered, false);
      borrowed = false;
    }
  }

  /** Whether `bytes` hold a frame's 13 bytes and its head. */
  private whole(bytes: Buffer): boolean {
    if (bytes.length < FRAME_HEADER_BYTES) return false;
    const headLength = bytes.readUInt32BE(5);
    if (headLength > MAX_HEAD_BYTES) throw new Error(`a frame head of ${headLength} bytes is over the ${MAX_HEAD_BYTES}-byte limit`);
    return bytes.length >= FRAME_HEADER_BYTES + headLength;
  }

  /** Starts the frame at the front of `bytes` (see {@link whole}); returns the bytes after its head. */
  private start(bytes: Buffer, borrowed: boolean): Buffer {
    const headLength = bytes.readUInt32BE(5);
    const bodyLength = bytes.readUInt32BE(9);
    const end = FRAME_HEADER_BYTES + headLength;
    const head = headLength > 0 ? bytes.subarray(FRAME_HEADER_BYTES, end) : undefined;
    const oversize = bodyLength > this.maxBodyBytes;
    this.current = { kind: bytes[0], id: bytes.readUInt32BE(1), head: head && borrowed ? Buffer.from(head) : head, body: [], bodyLength, oversize };
    this.bodyLeft = bodyLength;
    // Only a reader fed by readInto reads into place (push's chunks are already the reader's to keep).
    if (this.scratch && !oversize && bodyLength >= DIRECT_BODY_BYTES) {
      this.direct = Buffer.allocUnsafe(bodyLength);
      this.filled = 0;
    }
    if (bodyLength === 0) this.emit();
    return bytes.subarray(end);
  }

  private emit(): void {
    const frame = this.current!;
    if (this.direct) frame.body.push(this.direct);
    this.current = undefined;
    this.direct = undefined;
    this.onFrame(frame);
  }
}

/** A frame head's JSON, or undefined when it is missing or not an object. */
export function parseHead<T>(head: Buffer | undefined): T | undefined {
  if (!head) return undefined;
  try {
    const value = JSON.parse(head.toString('utf8')) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as T) : undefined;
  } catch {
    return undefined;
  }
}
