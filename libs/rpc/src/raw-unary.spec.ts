import { connect as connectHttp2 } from 'node:http2';
import { credentials, makeGenericClientConstructor, Metadata, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { waitFor } from '@maas/testing';
import type { CallEnd, CallObserver } from './call-observer';
import { InvalidArgumentError, ResourceExhaustedError, RETRY_ELSEWHERE_TRAILER } from './errors';
import { GrpcServer } from './grpc-server';
import type { ServerSurfaceCall } from './handlers';

const PATH = '/test.Raw/Echo';
const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const definition = { echo: { path: PATH, requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize } };
type EchoClient = Client & { echo(req: Buffer, md: Metadata, opts: object, cb: (err: ServiceError | null, res?: Buffer) => void): { cancel(): void } };
const Echo = makeGenericClientConstructor(definition, 'Raw');

/** What the observer saw of each call. */
interface Seen {
  path: string;
  requestId: string;
  messages: unknown[];
  end?: CallEnd;
}

async function serve(handle: (request: string, call: ServerSurfaceCall) => Promise<Buffer>, options: { refuse?: Error; maxReceiveMessageBytes?: number } = {}) {
  const seen: Seen[] = [];
  const observer: CallObserver = {
    begin({ path, metadata }) {
      if (options.refuse) throw options.refuse;
      metadata.set('x-request-id', String(metadata.get('x-request-id')[0] ?? 'minted'));
      const entry: Seen = { path, requestId: String(metadata.get('x-request-id')[0]), messages: [] };
      seen.push(entry);
      return { message: (m) => entry.messages.push(m), end: (outcome) => (entry.end = outcome) };
    },
  };
  let grpcJsCalls = 0;
  const server = new GrpcServer({ maxReceiveMessageBytes: options.maxReceiveMessageBytes });
  // The same method through grpc-js: what the raw path leaves to it (compressed requests) lands here.
  server.server.addService(definition, {
    echo: (_call: unknown, callback: (err: null, res: Buffer) => void) => {
      grpcJsCalls += 1;
      callback(null, Buffer.from('via grpc-js'));
    },
  });
  server.addRawUnary({ path: PATH, decode: (b) => b.toString('utf8'), handle, observers: [observer] });
  const port = await server.start();
  const client = new Echo(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as EchoClient;
  const call = (text: string | Buffer, opts: object = {}, md = new Metadata()) =>
    new Promise<{ err: ServiceError | null; res?: Buffer }>((resolve) => client.echo(Buffer.from(text), md, opts, (err, res) => resolve({ err, res })));
  return {
    port,
    seen,
    call,
    client,
    grpcJsCalls: () => grpcJsCalls,
    close: async () => {
      client.close();
      await server.shutdown(500);
    },
  };
}

/**
 * One call sent with exactly the `grpc-timeout` given, on Node's HTTP/2 client: grpc-js computes its
 * header from the deadline when it sends, a few milliseconds after the caller chose it on a busy machine.
 */
function callWithTimeout(port: number, text: string, timeout: string): Promise<{ code: number; details: string }> {
  const session = connectHttp2(`http://127.0.0.1:${port}`);
  const message = Buffer.from(text);
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ':path': PATH, 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': timeout });
    const settle = (headers: Record<string, unknown>) => {
      if (headers['grpc-status'] === undefined) return;
      session.close();
      resolve({ code: Number(headers['grpc-status']), details: decodeURIComponent(String(headers['grpc-message'] ?? '')) });
    };
    stream.on('response', settle);
    stream.on('trailers', settle);
    stream.on('error', reject);
    stream.resume();
    stream.end(Buffer.concat([prefix, message]));
  });
}

/** A handler that never answers, and says whether its call was cancelled. */
function hangingHandler() {
  let cancelled = false;
  return {
    handle: (_text: string, call: ServerSurfaceCall) => {
      call.once('cancelled', () => (cancelled = true));
      return new Promise<Buffer>(() => undefined);
    },
    cancelled: () => cancelled,
  };
}

describe('raw unary routes', () => {
  it('answers the handler’s bytes, with the observers and the caller’s metadata as on grpc-js', async () => {
    const s = await serve(async (text, call) => Buffer.from(`${text}|${String(call.metadata.get('x-request-id')[0])}|${String(call.metadata.get('x-custom')[0])}`));
    try {
      const md = new Metadata();
      md.set('x-request-id', 'r-1');
      md.set('x-custom', 'v');
      const { err, res } = await s.call('hello', {}, md);
      expect(err).toBeNull();
      expect(res?.toString()).toBe('hello|r-1|v');
      // Large answers are written without being copied with their prefix.
      const big = 'x'.repeat(300_000);
      expect((await s.call(big)).res?.toString().startsWith(`${big}|minted`)).toBe(true);
      expect(s.seen[0]).toEqual({ path: PATH, requestId: 'r-1', messages: ['hello'], end: { code: status.OK, details: '', endedAt: expect.any(BigInt) } });
      expect(s.grpcJsCalls()).toBe(0);
    } finally {
      await s.close();
    }
  });

  it('sends metadata the handler gives with sendMetadata as the answer’s headers', async () => {
    const s = await serve(async (text, call) => {
      const md = new Metadata();
      md.set('x-queue-ms', '1.5');
      (call as ServerSurfaceCall & { sendMetadata(m: Metadata): void }).sendMetadata(md);
      return Buffer.from(text);
    });
    try {
      const headers = await new Promise<Metadata>((resolve, reject) => {
        const call = s.client.echo(Buffer.from('hi'), new Metadata(), {}, (err) => err && reject(err));
        (call as unknown as NodeJS.EventEmitter).once('metadata', resolve);
      });
      expect(headers.get('x-queue-ms')).toEqual(['1.5']);
    } finally {
      await s.close();
    }
  });
  it('answers a handler’s error with its status, message and trailers', async () => {
    const s = await serve(async (text) => {
      if (text === 'busy') throw new ResourceExhaustedError('node queue full', { retryElsewhere: true });
      throw new InvalidArgumentError(`bad input "${text}": expected ünïcode % kept`);
    });
    try {
      const bad = await s.call('x');
      expect(bad.err).toMatchObject({ code: status.INVALID_ARGUMENT, details: 'bad input "x": expected ünïcode % kept' });
      const busy = await s.call('busy');
      expect(busy.err).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: 'node queue full' });
      expect(busy.err?.metadata.get(RETRY_ELSEWHERE_TRAILER)).toEqual(['1']);
      expect(s.seen.map((e) => e.end?.code)).toEqual([status.INVALID_ARGUMENT, status.RESOURCE_EXHAUSTED]);
    } finally {
      await s.close();
    }
  });

  it('ends a call at its deadline and cancels the handler’s work', async () => {
    const hanging = hangingHandler();
    const s = await serve(hanging.handle);
    try {
      const { err } = await s.call('slow', { deadline: Date.now() + 200 });
      expect(err?.code).toBe(status.DEADLINE_EXCEEDED);
      await waitFor(() => hanging.cancelled() && s.seen[0].end !== undefined, { timeoutMs: 2000, description: 'the handler to see the cancellation' });
      expect(s.seen[0].end?.code).toBe(status.DEADLINE_EXCEEDED);
    } finally {
      await s.close();
    }
  });

  it('answers DEADLINE_EXCEEDED shortly before the caller gives up, so its client need not reset the stream', async () => {
    const hanging = hangingHandler();
    const s = await serve(hanging.handle);
    try {
      const sent = Date.now();
      const err = await callWithTimeout(s.port, 'slow', '2000m');
      // The server's status (5 % of 2 s early), not the client's own expiry ("Deadline exceeded after …").
      expect(err.code).toBe(status.DEADLINE_EXCEEDED);
      expect(err.details).toBe("Deadline exceeded: no answer 100 ms before the caller's deadline");
      expect(Date.now() - sent).toBeLessThan(2000);
      expect(Date.now() - sent).toBeGreaterThanOrEqual(1850);
    } finally {
      await s.close();
    }
  });

  it('tells the handler and the observers when the client cancels', async () => {
    const hanging = hangingHandler();
    const s = await serve(hanging.handle);
    try {
      const pending = s.client.echo(Buffer.from('wait'), new Metadata(), {}, () => undefined);
      await waitFor(() => s.seen.length === 1 && s.seen[0].messages.length === 1, { timeoutMs: 2000, description: 'the call to reach the handler' });
      pending.cancel();
      await waitFor(() => hanging.cancelled(), { timeoutMs: 2000, description: 'the handler to see the cancellation' });
      expect(s.seen[0].end?.code).toBe(status.CANCELLED);
    } finally {
      await s.close();
    }
  });

  it('refuses a message over the limit, and a call an observer refuses, without running the handler', async () => {
    let handled = 0;
    const handle = async () => {
      handled += 1;
      return Buffer.from('no');
    };
    const small = await serve(handle, { maxReceiveMessageBytes: 1000 });
    const refusing = await serve(handle, { refuse: new ResourceExhaustedError('overloaded (gateway)') });
    try {
      expect((await small.call('y'.repeat(5000))).err).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('5000 vs. 1000') });
      expect((await refusing.call('z')).err).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: 'overloaded (gateway)' });
      expect(handled).toBe(0);
      expect(small.seen[0].end?.code).toBe(status.RESOURCE_EXHAUSTED);
    } finally {
      await small.close();
      await refusing.close();
    }
  });

  it('leaves compressed requests to grpc-js', async () => {
    const s = await serve(async () => Buffer.from('raw'));
    const gzip = new Echo(`127.0.0.1:${s.port}`, credentials.createInsecure(), {
      'grpc.default_compression_algorithm': 2,
    }) as unknown as EchoClient;
    try {
      const answer = await new Promise<Buffer | undefined>((resolve, reject) => gzip.echo(Buffer.from('a'.repeat(10_000)), new Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res))));
      expect(answer?.toString()).toBe('via grpc-js');
      expect(s.grpcJsCalls()).toBe(1);
    } finally {
      gzip.close();
      await s.close();
    }
  });
});
