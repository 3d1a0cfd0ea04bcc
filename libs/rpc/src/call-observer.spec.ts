import { connect, createServer, type Http2Server, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterWrites, drainAfterWrites } from './call-observer';

describe('afterWrites', () => {
  let server: Http2Server;
  let port: number;

  beforeEach(async () => {
    server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterEach(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('runs a task queued with an HTTP/2 answer once its trailers have gone out, not between message and trailers', async () => {
    const seen: Array<{ trailersSent: boolean }> = [];
    server.on('stream', (stream: ServerHttp2Stream) => {
      // Answered later, from another event (as a relayed answer is, from its node's socket), not from the
      // 'stream' event, after which node:http2 sends what is pending at once.
      setTimeout(() => {
        stream.respond({ ':status': 200 }, { waitForTrailers: true });
        stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.from('answer'));
        afterWrites(() => seen.push({ trailersSent: stream.sentTrailers !== undefined }));
      }, 1);
    });
    const session = connect(`http://127.0.0.1:${port}`);
    try {
      for (let i = 0; i < 5; i++) {
        const request = session.request({ ':path': '/' });
        request.end();
        request.resume();
        await new Promise<void>((resolve, reject) => {
          request.once('trailers', () => resolve());
          request.once('error', reject);
        });
      }
    } finally {
      session.close();
    }
    expect(seen).toEqual(Array(5).fill({ trailersSent: true }));
  });

  it('runs held tasks at once for a reader, and each only once', async () => {
    const ran: string[] = [];
    afterWrites(() => ran.push('a'));
    afterWrites(() => ran.push('b'));
    expect(ran).toEqual([]);
    drainAfterWrites();
    expect(ran).toEqual(['a', 'b']);
    await new Promise<void>((resolve) => afterWrites(() => resolve()));
    expect(ran).toEqual(['a', 'b']);
  });
});
