import { connect } from 'node:http2';
import { credentials, makeGenericClientConstructor, type Client } from '@grpc/grpc-js';
import { waitFor } from '@maas/testing';
import { service as healthService } from 'grpc-health-check';
import { GrpcServer, LIVENESS_SERVICE } from './grpc-server';

describe('GrpcServer', () => {
  it.each([
    [undefined, 65_535],
    [8 * 1024 * 1024, 8 * 1024 * 1024],
  ])('advertises receive window %p as %p bytes', async (receiveWindowBytes, expected) => {
    const server = new GrpcServer({ receiveWindowBytes });
    const port = await server.start();
    const session = connect(`http://127.0.0.1:${port}`);
    try {
      let window = -1;
      // A server may send SETTINGS more than once; the last one counts.
      session.on('remoteSettings', (settings) => (window = settings.initialWindowSize ?? 65_535));
      await waitFor(() => window === expected, { timeoutMs: 2000, description: `initial window ${expected}` });
    } finally {
      session.close();
      await server.shutdown(100);
    }
  });

  it('answers readiness on "" and liveness on its own name, which stays SERVING while the server drains', async () => {
    const server = new GrpcServer();
    const port = await server.start();
    const Health = makeGenericClientConstructor(healthService, 'Health');
    const client = new Health(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as Client & {
      check(request: { service: string }, callback: (err: Error | null, answer: { status: string }) => void): void;
    };
    const check = (service: string) => new Promise<string>((resolve, reject) => client.check({ service }, (err, answer) => (err ? reject(err) : resolve(answer.status))));
    try {
      expect([await check(''), await check(LIVENESS_SERVICE)]).toEqual(['SERVING', 'SERVING']);
      server.setServing(false);
      expect([await check(''), await check(LIVENESS_SERVICE)]).toEqual(['NOT_SERVING', 'SERVING']);
    } finally {
      client.close();
      await server.shutdown(100);
    }
  });
});
