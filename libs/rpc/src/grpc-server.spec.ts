import { connect } from 'node:http2';
import { waitFor } from '@maas/testing';
import { GrpcServer } from './grpc-server';

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
});
