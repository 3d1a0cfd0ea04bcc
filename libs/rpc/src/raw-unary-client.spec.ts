import { createServer as createH2Server, constants as h2, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { Metadata, status, type ServerErrorResponse } from '@grpc/grpc-js';
import { freePort, rejectionOf, waitFor } from '@maas/testing';
import { Cancellation } from './cancellation';
import { InvalidArgumentError, ResourceExhaustedError, RETRY_ELSEWHERE_TRAILER } from './errors';
import { GrpcServer } from './grpc-server';
import type { ServerSurfaceCall } from './handlers';
import { toServerError } from './status-mapper';
import { RawUnaryClient, type RawCallError, type RawUnaryClientOptions } from './raw-unary-client';

const PATH = '/test.Raw/Echo';
const LIMITS: RawUnaryClientOptions = { maxReceiveMessageBytes: 4 * 1024 * 1024, maxSendMessageBytes: 4 * 1024 * 1024 };
const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const definition = { echo: { path: PATH, requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize } };

type Handler = (request: Buffer, call: ServerSurfaceCall) => Promise<Buffer>;

/** A MaaS gRPC server whose Echo is served through grpc-js (`raw` false) or its raw route. */
async function serve(handle: Handler, options: { raw?: boolean; port?: number } = {}) {
  const server = new GrpcServer({ port: options.port });
  let grpcJsCalls = 0;
  server.server.addService(definition, {
    echo: (call: ServerSurfaceCall & { request: Buffer }, callback: (err: ServerErrorResponse | null, res?: Buffer) => void) => {
      grpcJsCalls += 1;
      handle(call.request, call).then(
        (res) => callback(null, res),
        (err: unknown) => callback(toServerError(err, 'Echo')),
      );
    },
  });
  if (options.raw) server.addRawUnary({ path: PATH, decode: (b) => b, handle });
  const port = await server.start();
  return { server, port, address: `127.0.0.1:${port}`, grpcJsCalls: () => grpcJsCalls };
}

const failure = (p: Promise<unknown>) => rejectionOf<RawCallError>(p);

/** A bare HTTP/2 server that answers every stream with `answer`: for what a gRPC server never does. */
async function misbehaving(answer: (stream: ServerHttp2Stream) => void): Promise<{ server: Http2Server; address: string }> {
  const server = createH2Server();
  server.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.resume();
    stream.once('end', () => answer(stream));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return { server, address: `127.0.0.1:${typeof address === 'object' && address ? address.port : 0}` };
}

function grpcFrame(message: Buffer, compressed = false): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = compressed ? 1 : 0;
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

const clients: RawUnaryClient[] = [];
const servers: Array<{ close(): unknown }> = [];
function client(address: string, options: Partial<RawUnaryClientOptions> = {}): RawUnaryClient {
  const c = new RawUnaryClient(address, { ...LIMITS, ...options });
  clients.push(c);
  return c;
}

afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) await s.close();
});

describe('RawUnaryClient', () => {
  it.each([false, true])('answers with the message and headers, forwarding metadata and deadline (raw route %s)', async (raw) => {
    const s = await serve(
      async (req, call) => {
        const md = new Metadata();
        md.set('x-queue-ms', '2.5');
        (call as unknown as { sendMetadata(m: Metadata): void }).sendMetadata(md);
        const left = call.getDeadline() === Infinity ? 'none' : Number(call.getDeadline()) - Date.now() > 1000 ? 'set' : 'short';
        return Buffer.from(`${req.toString()}|${String(call.metadata.get('x-request-id')[0])}|${left}`);
      },
      { raw },
    );
    servers.push({ close: () => s.server.shutdown(500) });
    const c = client(s.address);
    const md = new Metadata();
    md.set('x-request-id', 'r-7');
    const answer = await c.call(PATH, Buffer.from('hi'), { metadata: md, timeoutMs: 5000 });
    expect(answer.message.toString()).toBe('hi|r-7|set');
    expect(answer.headers['x-queue-ms']).toBe('2.5');
    // Large messages both ways, and many calls at once on the one connection.
    const big = Buffer.alloc(1_500_000, 7);
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => c.call(PATH, i === 0 ? big : Buffer.from(`m${i}`))));
    expect(answers[0].message.subarray(0, big.length).equals(big)).toBe(true);
    expect(answers.slice(1).map((a) => a.message.toString())).toEqual(Array.from({ length: 49 }, (_, i) => `m${i + 1}|undefined|none`));
    expect(s.grpcJsCalls()).toBe(raw ? 0 : 51);
  });

  it('sends a request given as pieces, and gives the answer as the chunks it arrived in and as one buffer', async () => {
    const s = await serve(async (req) => Buffer.concat([req, req]), { raw: true });
    servers.push({ close: () => s.server.shutdown(500) });
    const c = client(s.address);
    const big = Buffer.alloc(300_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const answer = await c.call(PATH, [big.subarray(0, 100_000), Buffer.alloc(0), big.subarray(100_000)]);
    // 600 kB back: more than one HTTP/2 DATA frame, so more than one chunk, none copied into a join until asked.
    expect(answer.pieces.length).toBeGreaterThan(1);
    const joined = Buffer.concat(answer.pieces);
    expect(joined.equals(Buffer.concat([big, big]))).toBe(true);
    expect(answer.message.equals(joined)).toBe(true);
    expect(answer.message).toBe(answer.message);
    const small = await c.call(PATH, [Buffer.from('a'), Buffer.from('b')]);
    expect([small.message.toString(), small.pieces.map(String)]).toEqual(['abab', ['abab']]);
    await expect(c.call(PATH, [Buffer.alloc(3 * 1024 * 1024), Buffer.alloc(2 * 1024 * 1024)])).rejects.toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('Sent message larger than max (5242880') });
  });

  it('reports the server’s status, decoded message and trailers as grpc-js does', async () => {
    const s = await serve(async (req) => {
      if (req.toString() === 'busy') throw new ResourceExhaustedError('node queue full', { retryElsewhere: true });
      throw new InvalidArgumentError(`bad input "${req.toString()}": expected ünïcode % kept`);
    }, { raw: true });
    servers.push({ close: () => s.server.shutdown(500) });
    const c = client(s.address);
    expect(await failure(c.call(PATH, Buffer.from('x')))).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'bad input "x": expected ünïcode % kept' });
    const busy = await failure(c.call(PATH, Buffer.from('busy')));
    expect(busy).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: 'node queue full' });
    expect(busy.metadata.get(RETRY_ELSEWHERE_TRAILER)).toEqual(['1']);
  });

  it('ends a call at its deadline, and on cancellation, and the server sees both', async () => {
    const cancelled: string[] = [];
    const s = await serve(
      (req, call) =>
        new Promise<Buffer>(() => {
          call.once('cancelled', () => cancelled.push(req.toString()));
        }),
      { raw: true },
    );
    servers.push({ close: () => s.server.shutdown(500) });
    const c = client(s.address);
    const started = Date.now();
    expect(await failure(c.call(PATH, Buffer.from('late'), { timeoutMs: 200 }))).toMatchObject({ code: status.DEADLINE_EXCEEDED });
    expect(Date.now() - started).toBeLessThan(2000);
    const cancel = new Cancellation();
    const pending = failure(c.call(PATH, Buffer.from('dropped'), { signal: cancel }));
    setTimeout(() => cancel.abort(), 50);
    expect(await pending).toMatchObject({ code: status.CANCELLED });
    await waitFor(() => cancelled.length === 2, { timeoutMs: 3000, description: 'the server to see both calls end' });
    expect(cancelled.sort()).toEqual(['dropped', 'late']);
    // An already-aborted signal and a passed deadline fail without sending anything.
    expect(await failure(c.call(PATH, Buffer.from('x'), { signal: cancel }))).toMatchObject({ code: status.CANCELLED });
    expect(await failure(c.call(PATH, Buffer.from('x'), { deadlineMs: Date.now() - 1 }))).toMatchObject({ code: status.DEADLINE_EXCEEDED });
  });

  it('refuses messages over its limits in grpc-js’s words', async () => {
    const s = await serve(async () => Buffer.alloc(3000), { raw: true });
    servers.push({ close: () => s.server.shutdown(500) });
    const c = client(s.address, { maxReceiveMessageBytes: 1000, maxSendMessageBytes: 100 });
    expect(await failure(c.call(PATH, Buffer.alloc(10)))).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: 'Received message larger than max (3000 vs. 1000)' });
    expect(await failure(c.call(PATH, Buffer.alloc(200)))).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: 'Sent message larger than max (200 vs. 100)' });
  });

  it('fails with UNAVAILABLE while nothing listens, backs off, and connects once the server is there', async () => {
    const port = await freePort();
    const c = client(`127.0.0.1:${port}`, { initialReconnectBackoffMs: 300 });
    const refused = await failure(c.call(PATH, Buffer.from('a'), { timeoutMs: 5000 }));
    expect(refused.code).toBe(status.UNAVAILABLE);
    expect(refused.details).toMatch(/ECONNREFUSED/);
    // Within the backoff a call fails at once, naming the failure.
    expect(await failure(c.call(PATH, Buffer.from('a'), { timeoutMs: 5000 }))).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringMatching(/ECONNREFUSED.*next try in/) });
    const s = await serve(async (req) => req, { raw: true, port });
    servers.push({ close: () => s.server.shutdown(500) });
    const answer = await waitFor(() => c.call(PATH, Buffer.from('back')).catch(() => undefined), { timeoutMs: 5000, description: 'the client to connect' });
    expect(answer.message.toString()).toBe('back');
  });

  it('fails calls with UNAVAILABLE when the server goes away, and opens a new connection to its successor', async () => {
    const port = await freePort();
    let s = await serve((req) => (req.toString() === 'hang' ? new Promise<Buffer>(() => undefined) : Promise.resolve(req)), { raw: true, port });
    const c = client(s.address, { initialReconnectBackoffMs: 50 });
    expect((await c.call(PATH, Buffer.from('one'))).message.toString()).toBe('one');
    const hanging = failure(c.call(PATH, Buffer.from('hang'), { timeoutMs: 10_000 }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    s.server.server.forceShutdown();
    const lost = await hanging;
    expect(lost.code).toBe(status.UNAVAILABLE);
    s = await serve(async (req) => req, { raw: true, port });
    servers.push({ close: () => s.server.shutdown(500) });
    const answer = await waitFor(() => c.call(PATH, Buffer.from('two')).catch(() => undefined), { timeoutMs: 5000, description: 'a call on a new connection' });
    expect(answer.message.toString()).toBe('two');
  });

  it.each([
    ['closes the socket (FIN)', (socket: Socket) => socket.destroy()],
    ['resets the socket (RST)', (socket: Socket) => socket.resetAndDestroy()],
  ])('fails a call with UNAVAILABLE when its server dies without a GOAWAY: it %s', async (_how, die) => {
    // A killed process sends no GOAWAY: the kernel closes its sockets, and Node closes the streams on them with CANCEL.
    const { server, address } = await misbehaving(() => undefined);
    servers.push({ close: () => new Promise((resolve) => server.close(resolve)) });
    let socket: Socket | undefined;
    server.on('connection', (s: Socket) => (socket = s));
    server.on('stream', () => setImmediate(() => die(socket!)));
    const c = client(address);
    for (let i = 0; i < 20; i++) {
      const err = await failure(c.call(PATH, Buffer.from(`x${i}`), { timeoutMs: 5000 }));
      expect(err).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringMatching(/connection to the server lost/) });
    }
  });

  it('closes a connection whose keepalive ping goes unanswered (a frozen server), failing its calls with UNAVAILABLE', async () => {
    // Accepts the TCP connection and never says anything: as a SIGSTOPped process does once the kernel holds the socket.
    const sockets: Socket[] = [];
    const blackHole: TcpServer = createTcpServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
    servers.push({
      close: () => {
        for (const socket of sockets) socket.destroy();
        return new Promise((resolve) => blackHole.close(resolve));
      },
    });
    const address = blackHole.address();
    const c = client(`127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, { keepaliveMs: 100, keepaliveTimeoutMs: 200 });
    const started = Date.now();
    const err = await failure(c.call(PATH, Buffer.from('x'), { timeoutMs: 20_000 }));
    expect(err).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringContaining('keepalive ping unanswered') });
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it.each([
    ['an HTTP error status', (s: ServerHttp2Stream) => s.respond({ ':status': 503 }, { endStream: true }), status.UNAVAILABLE, /HTTP 503/],
    ['no gRPC status', (s: ServerHttp2Stream) => s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { endStream: true }), status.INTERNAL, /without a gRPC status/],
    ['a refused stream', (s: ServerHttp2Stream) => s.close(h2.NGHTTP2_REFUSED_STREAM), status.UNAVAILABLE, /refused/],
    [
      'a compressed answer',
      (s: ServerHttp2Stream) => {
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(grpcFrame(Buffer.from('zz'), true));
      },
      status.INTERNAL,
      /compressed/,
    ],
    [
      'two answer messages',
      (s: ServerHttp2Stream) => {
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end(Buffer.concat([grpcFrame(Buffer.from('a')), grpcFrame(Buffer.from('b'))]));
      },
      status.INTERNAL,
      /more than one message/,
    ],
    [
      'OK without a message',
      (s: ServerHttp2Stream) => {
        s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
        s.end();
      },
      status.UNIMPLEMENTED,
      /without a whole response message/,
    ],
    [
      'an invalid grpc-status',
      (s: ServerHttp2Stream) => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': 'x' }, { endStream: true }),
      status.UNKNOWN,
      /invalid grpc-status/,
    ],
  ])('maps %s to a clear status', async (_what, answer, code, details) => {
    const m = await misbehaving(answer);
    servers.push({ close: () => new Promise((resolve) => m.server.close(resolve)) });
    const c = client(m.address);
    expect(await failure(c.call(PATH, Buffer.from('x'), { timeoutMs: 5000 }))).toMatchObject({ code, details: expect.stringMatching(details) });
  });

  it('takes host:port (an IPv6 host in brackets) and refuses any other target, which its pool leaves to grpc-js', () => {
    for (const address of ['127.0.0.1:50061', '[::1]:50061', 'node-a:1']) expect(() => client(address)).not.toThrow();
    for (const address of ['dns:///node-a:50061', '::1:50061', 'node-a', 'node-a:0', 'node-a:70000']) expect(() => client(address)).toThrow(/host:port/);
  });

  it('fails every call after close, and lets the calls already running finish', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const s = await serve(async (req) => {
      await held;
      return req;
    }, { raw: true });
    servers.push({ close: () => s.server.shutdown(500) });
    const c = client(s.address);
    const running = c.call(PATH, Buffer.from('running'), { timeoutMs: 5000 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    c.close();
    expect(await failure(c.call(PATH, Buffer.from('late')))).toMatchObject({ code: status.UNAVAILABLE, details: expect.stringContaining('closed') });
    release();
    expect((await running).message.toString()).toBe('running');
  });
});
