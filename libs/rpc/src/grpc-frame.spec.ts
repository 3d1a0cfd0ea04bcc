import { PassThrough } from 'node:stream';
import { status } from '@grpc/grpc-js';
import { endWithMessage, UnaryMessageReader } from './grpc-frame';

const WORDS = { compressed: 'compressed, and no encoding was agreed', extra: 'more than one message' };

function framed(message: Buffer, flag = 0): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = flag;
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

describe('UnaryMessageReader', () => {
  it('gives the message of one chunk without copying it, and joins one that came in pieces', () => {
    const one = new UnaryMessageReader(1000, WORDS);
    const chunk = framed(Buffer.from('hello'));
    expect(one.push(chunk)).toBeUndefined();
    expect(one.complete).toBe(true);
    const message = one.message();
    expect(message.toString()).toBe('hello');
    expect(message.buffer).toBe(chunk.buffer);

    const pieces = new UnaryMessageReader(1000, WORDS);
    const whole = framed(Buffer.from('split across the prefix'));
    for (const piece of [whole.subarray(0, 3), whole.subarray(3, 9), whole.subarray(9)]) {
      expect(pieces.complete).toBe(false);
      expect(pieces.push(piece)).toBeUndefined();
    }
    expect(pieces.complete).toBe(true);
    expect(pieces.message().toString()).toBe('split across the prefix');
  });

  it('gives the message as the chunks it came in, the prefix cut off wherever it ends, none copied', () => {
    const whole = framed(Buffer.from('prefix, then the message'));
    for (const cuts of [[], [2], [5], [3, 9], [5, 6, 20]]) {
      const reader = new UnaryMessageReader(1000, WORDS);
      const chunks = [0, ...cuts].map((at, i, all) => whole.subarray(at, all[i + 1] ?? whole.length));
      for (const chunk of chunks) expect(reader.push(chunk)).toBeUndefined();
      const pieces = reader.pieces();
      expect(Buffer.concat(pieces).toString()).toBe('prefix, then the message');
      for (const piece of pieces) expect(piece.buffer).toBe(whole.buffer);
      expect(pieces.every((p) => p.length > 0)).toBe(true);
    }
    const empty = new UnaryMessageReader(100, WORDS);
    empty.push(framed(Buffer.alloc(0)));
    expect(empty.pieces()).toEqual([]);
  });

  it('says what is wrong with a message over the limit, a compressed one, and bytes after it', () => {
    expect(new UnaryMessageReader(4, WORDS).push(framed(Buffer.alloc(10)))).toEqual({ code: status.RESOURCE_EXHAUSTED, details: 'Received message larger than max (10 vs. 4)' });
    expect(new UnaryMessageReader(100, WORDS).push(framed(Buffer.alloc(3), 1))).toEqual({ code: status.INTERNAL, details: WORDS.compressed });
    expect(new UnaryMessageReader(100, WORDS).push(Buffer.concat([framed(Buffer.alloc(3)), Buffer.from([0])]))).toEqual({ code: status.INTERNAL, details: WORDS.extra });
    const empty = new UnaryMessageReader(100, WORDS);
    expect(empty.push(framed(Buffer.alloc(0)))).toBeUndefined();
    expect(empty.complete).toBe(true);
    expect(empty.message().length).toBe(0);
  });
});

describe('endWithMessage', () => {
  it.each([10, 200_000])('writes the length prefix and the %i-byte message, then ends the stream', async (size) => {
    const stream = new PassThrough();
    const out: Buffer[] = [];
    stream.on('data', (b: Buffer) => out.push(b));
    const message = Buffer.alloc(size, 7);
    endWithMessage(stream, message);
    await new Promise((resolve) => stream.once('end', resolve));
    const reader = new UnaryMessageReader(size, WORDS);
    for (const b of out) expect(reader.push(b)).toBeUndefined();
    expect(reader.message().equals(message)).toBe(true);
  });

  it.each([10, 200_000])('writes a %i-byte message given in pieces as the same frame, large pieces uncopied', async (size) => {
    const stream = new PassThrough();
    const out: Buffer[] = [];
    stream.on('data', (b: Buffer) => out.push(b));
    const message = Buffer.from(Array.from({ length: size }, (_, i) => (i * 13) & 0xff));
    const pieces = [message.subarray(0, 3), Buffer.alloc(0), message.subarray(3, size - 2), message.subarray(size - 2)];
    endWithMessage(stream, pieces);
    await new Promise((resolve) => stream.once('end', resolve));
    expect(Buffer.concat(out).equals(framed(message))).toBe(true);
    // A large message's pieces reach the stream as they are (the prefix first), not joined into a copy.
    if (size > 64 * 1024) expect(out.some((b) => b.buffer === message.buffer && b.length === size - 5)).toBe(true);
  });
});
