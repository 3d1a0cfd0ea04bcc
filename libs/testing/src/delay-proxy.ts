import { connect, createServer, type Socket } from 'node:net';

/** A TCP proxy on loopback that holds back every byte coming from the target. */
export interface DelayProxy {
  port: number;
  address: string;
  /** Changes the delay for bytes received from now on. */
  setDelay(ms: number): void;
  stop(): Promise<void>;
}

/**
 * Forwards connections to `target` (`host:port`), delivering what the target
 * sends `delayMs` later, in order: a server that answers slowly, as a
 * degraded node would, without changing the server itself.
 */
export async function startDelayProxy(target: string, delayMs: number): Promise<DelayProxy> {
  const [host, portText] = [target.slice(0, target.lastIndexOf(':')), target.slice(target.lastIndexOf(':') + 1)];
  let delay = delayMs;
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
    stop: () =>
      new Promise<void>((resolve) => {
        sockets.forEach((s) => s.destroy());
        server.close(() => resolve());
      }),
  };
}
