import type { Writable } from 'node:stream';
import { status } from '@grpc/grpc-js';

/** Messages up to this size go out as one buffer with their 5-byte prefix; larger ones as two writes, uncopied. */
const JOIN_BELOW_BYTES = 64 * 1024;

/** A message's bytes: one buffer, or pieces to be sent one after the other (see encodePredictResponsePieces). */
export type MessageBytes = Buffer | readonly Buffer[];

/** A message as one buffer: the buffer itself, the one piece, or the pieces joined into a copy. */
export function joinedMessage(message: MessageBytes): Buffer {
  if (Buffer.isBuffer(message)) return message;
  return message.length === 1 ? message[0] : Buffer.concat(message);
}

/** How many bytes a message has. */
export function messageLength(message: MessageBytes): number {
  if (Buffer.isBuffer(message)) return message.length;
  let n = 0;
  for (const piece of message) n += piece.length;
  return n;
}

/**
 * Writes one uncompressed gRPC message (its 5-byte length prefix, then the
 * bytes) and ends the stream. Pieces are written as they are, uncopied, once
 * the message is large; the stream holds them until they are sent.
 */
export function endWithMessage(stream: Writable, message: MessageBytes): void {
  const length = messageLength(message);
  const prefix = Buffer.allocUnsafe(5);
  prefix[0] = 0;
  prefix.writeUInt32BE(length, 1);
  const pieces = Buffer.isBuffer(message) ? [message] : message;
  if (length < JOIN_BELOW_BYTES) {
    stream.end(Buffer.concat([prefix, ...pieces], length + 5));
    return;
  }
  // Held until end() so the prefix and every piece go to the stream in one vectored write.
  stream.cork();
  stream.write(prefix);
  for (let i = 0; i < pieces.length - 1; i++) if (pieces[i].length > 0) stream.write(pieces[i]);
  stream.end(pieces.length > 0 ? pieces[pieces.length - 1] : undefined);
}

/** What breaks a unary call's message rules, as the status to end the call with. */
export interface FrameProblem {
  code: status;
  details: string;
}

/**
 * Collects the one length-prefixed message of a unary call from the chunks
 * of its HTTP/2 stream: refuses a compressed one (no encoding was agreed), one
 * over the receive limit (in grpc-js's words, as its callers match them) and
 * bytes after it; the message comes out once whole, copied only when it
 * arrived in more than one chunk.
 */
export class UnaryMessageReader {
  private chunks: Buffer[] = [];
  private received = 0;
  private expected = -1;

  constructor(
    private readonly maxBytes: number,
    /** How to say the two protocol faults for this side of the call. */
    private readonly words: { compressed: string; extra: string },
  ) {}

  /** Bytes taken so far, prefix included. */
  get size(): number {
    return this.received;
  }

  /** Whether one whole message has arrived. */
  get complete(): boolean {
    return this.expected >= 0 && this.received >= this.expected + 5;
  }

  /** Takes a chunk; returns the problem when the bytes break the rules (the reader is then spent). */
  push(chunk: Buffer): FrameProblem | undefined {
    this.received += chunk.length;
    this.chunks.push(chunk);
    if (this.expected < 0 && this.received >= 5) {
      const head = this.chunks[0].length >= 5 ? this.chunks[0] : Buffer.concat(this.chunks);
      if (head[0] !== 0) return this.spent({ code: status.INTERNAL, details: this.words.compressed });
      this.expected = head.readUInt32BE(1);
      if (this.expected > this.maxBytes) return this.spent({ code: status.RESOURCE_EXHAUSTED, details: `Received message larger than max (${this.expected} vs. ${this.maxBytes})` });
    }
    if (this.expected >= 0 && this.received > this.expected + 5) return this.spent({ code: status.INTERNAL, details: this.words.extra });
    return undefined;
  }

  /** The message without its prefix, copied only when it arrived in several chunks; call once {@link complete}. Releases the chunks. */
  message(): Buffer {
    return joinedMessage(this.pieces());
  }

  /**
   * The message without its prefix as the chunks it arrived in, uncopied: for
   * writing it out again. Call once {@link complete}. Releases the chunks.
   */
  pieces(): Buffer[] {
    const pieces: Buffer[] = [];
    let skip = 5;
    for (const chunk of this.chunks) {
      if (skip >= chunk.length) {
        skip -= chunk.length;
        continue;
      }
      pieces.push(skip > 0 ? chunk.subarray(skip) : chunk);
      skip = 0;
    }
    this.chunks = [];
    return pieces;
  }

  /** Drops what was collected. */
  clear(): void {
    this.chunks = [];
  }

  private spent(problem: FrameProblem): FrameProblem {
    this.chunks = [];
    return problem;
  }
}
