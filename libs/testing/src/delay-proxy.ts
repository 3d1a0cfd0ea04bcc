import { connect, createServer, type Socket } from 'node:net';

/** A TCP proxy on loopback that holds back every byte coming from the target. */
export interface DelayProxy {
  port: number;
  address: string;
  /** Changes the delay for bytes received from now on. */
  setDelay(ms: number): void;
  /** HTTP/2 HEADERS frames clients sent through the proxy: one per gRPC call. */
  readonly calls: number;
  stop(): Promise<void>;
}

/** HTTP/2 client connection preface, sent once before the first frame. */
const PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const HEADERS_FRAME = 0x1;

/** Reads the client side of an HTTP/2 connection as it streams by and reports each HEADERS frame. */
function countFrames(onHeaders: () => void): (chunk: Buffer) => void {
  let pending = Buffer.alloc(0);
  let skip = PREFACE_BYTES;
  return (chunk) => {
    pending = Buffer.concat([pending, chunk]);
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, pending.length);
        pending = pending.subarray(n);
        skip -= n;
        if (skip > 0) return;
      }
      if (pending.length < FRAME_HEADER_BYTES) return;
      const length = pending.readUIntBE(0, 3);
      if (pending[3] === HEADERS_FRAME) onHeaders();
      pending = pending.subarray(FRAME_HEADER_BYTES);
      skip = length;
    }
  };
}

/**
 * Forwards connections to `target` (`host:port`), delivering what the target
 * sends `delayMs` later, in order: a server that answers slowly, as a
 * degraded node would, without changing the server itself.
 */
export async function startDelayProxy(target: string, delayMs: number): Promise<DelayProxy> {
  const [host, portText] = [target.slice(0, target.lastIndexOf(':')), target.slice(target.lastIndexOf(':') + 1)];
  let delay = delayMs;
  let calls = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(portText), host);
    sockets.add(client).add(upstream);
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', closeBoth).on('close', closeBoth);
    upstream.on('error', closeBoth).on('close', closeBoth);
    client.pipe(upstream);
    client.on('data', countFrames(() => (calls += 1)));
    // A chunk is never due before the one ahead of it, so order holds when the delay changes.
    let lastDue = 0;
    upstream.on('data', (chunk: Buffer) => {
      const due = Math.max(Date.now() + delay, lastDue);
      lastDue = due;
      setTimeout(() => {
        if (!client.destroyed) client.write(chunk);
      }, due - Date.now());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    address: `127.0.0.1:${port}`,
    setDelay(ms) {
      delay = ms;
    },
    get calls() {
      return calls;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}
