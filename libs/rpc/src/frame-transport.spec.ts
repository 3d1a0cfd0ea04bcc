import { connect, createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { Metadata, status } from '@grpc/grpc-js';
import { freePort, rejectionOf, waitFor } from '@maas/testing';
import { Cancellation } from './cancellation';
import { InvalidArgumentError, ResourceExhaustedError, RETRY_ELSEWHERE_TRAILER } from './errors';
import { FrameUnaryClient, neverSent, type FrameClientOptions } from './frame-client';
import { FRAMES_PREFACE, FrameReader, FrameKind, writeFrame, type ReadFrame } from './frame-codec';
import { FrameServer } from './frame-server';
import type { ServerSurfaceCall } from './handlers';
import type { RawCallError } from './raw-unary-client';

const PATH = '/test.Frames/Echo';
const MAX = 4 * 1024 * 1024;
const LIMITS: FrameClientOptions = { maxReceiveMessageBytes: MAX, maxSendMessageBytes: MAX };

type Handler = (request: Buffer, call: ServerSurfaceCall & { sendMetadata(m: Metadata): void }) => Promise<Buffer | Buffer[]>;

const failure = (p: Promise<unknown>) => rejectionOf<RawCallError>(p);

describe('node frames: unary calls on a plain TCP connection', () => {
  const closers: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });

  async function serve(handle: Handler, limits: { maxReceiveMessageBytes?: number; maxSendMessageBytes?: number } = {}, port = 0) {
    const server = new FrameServer({ maxReceiveMessageBytes: limits.maxReceiveMessageBytes ?? MAX, maxSendMessageBytes: limits.maxSendMessageBytes ?? MAX, port });
    server.add({ path: PATH, decode: (b) => b, handle });
    const bound = await server.start();
    closers.push(() => server.shutdown(100));
    return { server, port: bound };
  }

  function client(port: number, options: Partial<FrameClientOptions> = {}) {
    const c = new FrameUnaryClient('127.0.0.1', port, { ...LIMITS, ...options });
    closers.push(() => c.close());
    return c;
  }

  it('answers many interleaved calls of every size, each with its own bytes and headers', async () => {
    const { server, port } = await serve(async (request, call) => {
      const md = new Metadata();
      md.set('x-length', String(request.length));
      call.sendMetadata(md);
      // Answers come back out of order: the smaller, the later.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 20 - request.length / 100_000)));
      return [request.subarray(0, 1), request.subarray(1)];
    });
    const c = client(port);
    const sizes = [1, 10, 1000, 70_000, 1_048_576, 3_000_000, 5, 200_000];
    const calls = sizes.map(async (size, i) => {
      const request = Buffer.alloc(size, i + 1);
      const md = new Metadata();
      md.set('x-call', String(i));
      const answer = await c.call(PATH, size > 1000 ? [request.subarray(0, 7), request.subarray(7)] : request, { timeoutMs: 10_000, metadata: md });
      expect(answer.message.equals(request)).toBe(true);
      expect(answer.headers['x-length']).toBe(String(size));
    });
    await Promise.all(calls);
    expect(server.stats).toEqual({ calls: sizes.length, connections: 1 });
  });

  it("passes the caller's metadata and deadline, and the server's status, details and trailers", async () => {
    let seen: { callId?: string; left?: number } = {};
    const { port } = await serve(async (request, call) => {
      seen = { callId: call.metadata.get('x-call-id')[0] as string, left: call.getDeadline() as number - Date.now() };
      if (request.toString() === 'bad') throw new InvalidArgumentError('input "x" has 3 dims, expected 4');
      throw new ResourceExhaustedError('queue full', { retryElsewhere: true });
    });
    const c = client(port);
    const md = new Metadata();
    md.set('x-call-id', 'abc');
    const bad = await failure(c.call(PATH, Buffer.from('bad'), { timeoutMs: 5000, metadata: md }));
    expect({ code: bad.code, details: bad.details }).toEqual({ code: status.INVALID_ARGUMENT, details: 'input "x" has 3 dims, expected 4' });
    expect(seen.callId).toBe('abc');
    expect(seen.left).toBeGreaterThan(4000);
    expect(seen.left).toBeLessThanOrEqual(5000);
    const full = await failure(c.call(PATH, Buffer.from('x'), { timeoutMs: 5000 }));
    expect(full.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(full.metadata.get(RETRY_ELSEWHERE_TRAILER)).toEqual(['1']);
  });

  it("ends a call at the caller's deadline, and the server's handler hears it was cancelled", async () => {
    let cancelled = 0;
    const { port } = await serve((_request, call) => {
      call.once('cancelled', () => (cancelled += 1));
      return new Promise(() => undefined);
    });
    const c = client(port);
    const started = Date.now();
    const late = await failure(c.call(PATH, Buffer.from('x'), { timeoutMs: 300 }));
    expect(late.code).toBe(status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    await waitFor(() => cancelled === 1, { description: 'the handler cancelled' });
    // A cancellation by the caller reaches the handler too, and the connection carries on.
    const control = new Cancellation();
    const aborted = failure(c.call(PATH, Buffer.from('y'), { timeoutMs: 10_000, signal: control.signal }));
    await new Promise((resolve) => setTimeout(resolve, 20));
    control.abort();
    expect((await aborted).code).toBe(status.CANCELLED);
    await waitFor(() => cancelled === 2, { description: 'the second handler cancelled' });
  });

  it('refuses messages over either side\'s limit with RESOURCE_EXHAUSTED, and the connection stays usable', async () => {
    const { port } = await serve(async (request) => (request.length === 1 ? Buffer.alloc(2048) : request), { maxReceiveMessageBytes: 1024 });
    const c = client(port, { maxReceiveMessageBytes: 1024 });
    const big = await failure(c.call(PATH, Buffer.alloc(5000), { timeoutMs: 5000 }));
    expect(big).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: 'Received message larger than max (5000 vs. 1024)' });
    const bigAnswer = await failure(c.call(PATH, Buffer.alloc(1), { timeoutMs: 5000 }));
    expect(bigAnswer).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: 'Received message larger than max (2048 vs. 1024)' });
    expect((await c.call(PATH, Buffer.from('ok'), { timeoutMs: 5000 })).message.toString()).toBe('ok');
  });

  it('fails calls in flight with UNAVAILABLE when the server goes away, and reconnects once it is back', async () => {
    const port = await freePort();
    const first = await serve(() => new Promise(() => undefined), {}, port);
    const c = client(port, { initialReconnectBackoffMs: 10 });
    const pending = failure(c.call(PATH, Buffer.from('x'), { timeoutMs: 10_000 }));
    await waitFor(() => first.server.stats.calls === 1, { description: 'the call arrived' });
    await first.server.shutdown(0);
    const lost = await pending;
    expect(lost.code).toBe(status.UNAVAILABLE);
    expect(lost.details).toMatch(/connection to the server lost/);
    expect(neverSent(lost)).toBe(false);
    // Nothing listens now: the call never left, and says so (a caller may send it another way).
    const refused = await failure(c.call(PATH, Buffer.from('x'), { timeoutMs: 10_000 }));
    expect(refused.code).toBe(status.UNAVAILABLE);
    expect(neverSent(refused)).toBe(true);
    await serve(async (request) => request, {}, port);
    await waitFor(() => c.usable, { description: 'backoff over' });
    expect((await c.call(PATH, Buffer.from('back'), { timeoutMs: 5000 })).message.toString()).toBe('back');
  });

  it('closes a connection whose keepalive ping goes unanswered (a frozen server), failing its calls with UNAVAILABLE', async () => {
    // A server that takes the connection and never reads from it again.
    const taken: Socket[] = [];
    const silent: TcpServer = createTcpServer((socket) => taken.push(socket.pause()));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    closers.push(() => new Promise<void>((resolve) => silent.close(() => resolve())));
    closers.push(() => taken.forEach((socket) => socket.destroy()));
    const c = client((silent.address() as { port: number }).port, { keepaliveMs: 50, keepaliveTimeoutMs: 100 });
    const lost = await failure(c.call(PATH, Buffer.from('x'), { timeoutMs: 10_000 }));
    expect(lost.code).toBe(status.UNAVAILABLE);
    expect(lost.details).toMatch(/keepalive ping unanswered/);
  });

  it('cuts off a peer that stopped reading once its answers queue past the bound, and not a reader taking a burst', async () => {
    const server = new FrameServer({ maxReceiveMessageBytes: MAX, maxSendMessageBytes: MAX, maxQueuedBytes: 4 * 1024 * 1024 });
    server.add({ path: PATH, decode: (b) => b, handle: async () => Buffer.alloc(1024 * 1024) });
    const port = await server.start();
    closers.push(() => server.shutdown(100));
    // A burst of 16 MiB of answers, all in one turn, to a client that reads them: every one arrives.
    const c = client(port);
    const answers = await Promise.all(Array.from({ length: 16 }, () => c.call(PATH, Buffer.from('x'), { timeoutMs: 10_000 })));
    expect(answers.every((a) => a.message.length === 1024 * 1024)).toBe(true);
    // A peer that sends calls and never reads an answer (a frozen gateway): cut off, its queue let go.
    const peer = connect({ port, host: '127.0.0.1' });
    closers.push(() => void peer.destroy());
    await new Promise((resolve) => peer.once('connect', resolve));
    peer.pause();
    peer.write(FRAMES_PREFACE);
    await waitFor(() => server.openConnections === 2, { description: 'the peer connected' });
    for (let id = 1; id <= 16; id++) writeFrame(peer, FrameKind.Call, id, { p: PATH });
    const started = Date.now();
    // (The paused peer cannot see the close itself: the server's count says it.)
    await waitFor(() => server.openConnections === 1, { description: 'the stalled peer cut off' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    // The reading client's connection carries on.
    expect((await c.call(PATH, Buffer.from('x'), { timeoutMs: 5000 })).message.length).toBe(1024 * 1024);
  });

  it('drops a connection that does not open with the preface, and answers pings', async () => {
    const { port } = await serve(async (request) => request);
    const stray = connect({ port, host: '127.0.0.1' });
    stray.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    await new Promise((resolve) => stray.once('close', resolve));
    const pinger = connect({ port, host: '127.0.0.1' });
    closers.push(() => void pinger.destroy());
    const frames: ReadFrame[] = [];
    const reader = new FrameReader(MAX, (frame) => frames.push(frame));
    pinger.on('data', (chunk: Buffer) => reader.push(chunk));
    pinger.write(FRAMES_PREFACE);
    writeFrame(pinger, FrameKind.Ping, 7);
    writeFrame(pinger, FrameKind.Call, 9, { p: '/test.Frames/Other' });
    await waitFor(() => frames.length === 2, { description: 'pong and answer' });
    expect(frames[0]).toMatchObject({ kind: FrameKind.Pong, id: 7 });
    expect(frames[1]).toMatchObject({ kind: FrameKind.Answer, id: 9 });
    expect(JSON.parse(frames[1].head!.toString())).toEqual({ s: status.UNIMPLEMENTED, d: '/test.Frames/Other is not served over node frames' });
  });
});

/** The bytes that the frames `write` writes with writeFrame would put on a socket. */
function frameBytes(write: (sink: Parameters<typeof writeFrame>[0]) => void): Buffer {
  const chunks: Buffer[] = [];
  write({ write: (b: Buffer) => chunks.push(Buffer.from(b)), cork: () => undefined, uncork: () => undefined } as unknown as Parameters<typeof writeFrame>[0]);
  return Buffer.concat(chunks);
}

describe('FrameReader', () => {
  it('cuts frames out of bytes split anywhere, bodies uncopied', () => {
    const frames: ReadFrame[] = [];
    const reader = new FrameReader(1000, (frame) => frames.push(frame));
    const all = frameBytes((sink) => {
      writeFrame(sink, FrameKind.Call, 1, { p: '/a' }, Buffer.from('hello'));
      writeFrame(sink, FrameKind.Cancel, 2);
      writeFrame(sink, FrameKind.Answer, 3, { s: 0 }, [Buffer.alloc(600, 1), Buffer.alloc(600, 2)]);
      writeFrame(sink, FrameKind.Answer, 4, { s: 0 }, Buffer.from('after'));
    });
    for (let i = 0; i < all.length; i += 3) reader.push(all.subarray(i, i + 3));
    expect(frames.map((f) => [f.kind, f.id, f.oversize, Buffer.concat(f.body).toString()])).toEqual([
      [FrameKind.Call, 1, false, 'hello'],
      [FrameKind.Cancel, 2, false, ''],
      [FrameKind.Answer, 3, true, ''],
      [FrameKind.Answer, 4, false, 'after'],
    ]);
    expect(frames[2].bodyLength).toBe(1200);
  });

  it('reads into place for a socket\'s onread: large bodies in buffers of their own, the rest copied out of one reused scratch', () => {
    const frames: ReadFrame[] = [];
    const reader = new FrameReader(600 * 1024, (frame) => frames.push(frame));
    const fill = (bytes: number, seed: number) => Buffer.from(Array.from({ length: bytes }, (_, i) => (i * 31 + seed) & 0xff));
    const sent = [fill(5, 1), fill(100 * 1024, 2), fill(0, 0), fill(700 * 1024, 3), fill(40, 4), fill(300 * 1024, 5), fill(33 * 1024, 6), fill(1, 7)];
    const all = frameBytes((sink) => sent.forEach((body, i) => writeFrame(sink, FrameKind.Answer, i + 1, { s: 0, n: i }, [body.subarray(0, 3), body.subarray(3)])));
    // Reads of every size, as a socket gives them: each fills at most what the reader offered.
    const sizes = [1, 7, 13, 4096, 65536, 1 << 20];
    let direct = 0;
    for (let at = 0, k = 0; at < all.length; k++) {
      const target = reader.nextReadBuffer();
      const n = Math.min(target.length, all.length - at, sizes[k % sizes.length]);
      all.copy(target, 0, at, at + n);
      if (target.buffer.byteLength !== 128 * 1024) direct += 1;
      reader.readInto(n, target);
      at += n;
    }
    expect(frames.map((f) => f.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    // Between frames the next read goes to the scratch: what a frame kept of it would change with it.
    reader.nextReadBuffer().fill(0xee);
    for (const [i, frame] of frames.entries()) {
      expect(JSON.parse(frame.head!.toString())).toEqual({ s: 0, n: i });
      if (frame.oversize) continue;
      // Every head and body intact after the scratch was overwritten.
      expect(Buffer.concat(frame.body).equals(sent[i])).toBe(true);
    }
    expect(frames.map((f) => f.oversize)).toEqual([false, false, false, true, false, false, false, false]);
    // The 100 KB, 300 KB and 33 KB bodies each arrive as one buffer, most of it read straight into place.
    expect([1, 5, 6].map((i) => frames[i].body.length)).toEqual([1, 1, 1]);
    expect(direct).toBeGreaterThan(0);
  });

  it('gathers a frame start that arrives over several scratch reads, each overwriting the last', () => {
    const frames: ReadFrame[] = [];
    const reader = new FrameReader(1000, (frame) => frames.push(frame));
    const all = frameBytes((sink) => {
      writeFrame(sink, FrameKind.Call, 1, { p: '/first' }, Buffer.from('one'));
      writeFrame(sink, FrameKind.Answer, 2, { s: 0, n: 2 }, Buffer.from('two'));
      writeFrame(sink, FrameKind.Cancel, 3);
    });
    // Reads of 1 to 4 bytes: every frame's 13 bytes and head span reads, and each read lands at the scratch's start.
    for (let at = 0, k = 0; at < all.length; k++) {
      const target = reader.nextReadBuffer();
      const n = Math.min(all.length - at, 1 + (k % 4));
      all.copy(target, 0, at, at + n);
      reader.readInto(n, target);
      at += n;
    }
    expect(frames.map((f) => [f.kind, f.id, f.head?.toString(), Buffer.concat(f.body).toString()])).toEqual([
      [FrameKind.Call, 1, '{"p":"/first"}', 'one'],
      [FrameKind.Answer, 2, '{"s":0,"n":2}', 'two'],
      [FrameKind.Cancel, 3, undefined, ''],
    ]);
  });
});
