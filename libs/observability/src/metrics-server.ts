import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { drainAfterWrites } from '@maas/rpc';

/** Options of {@link startMetricsServer}. */
export interface MetricsServerOptions {
  registry: Registry;
  /** Interface to bind. @default '127.0.0.1' */
  host?: string;
  /** Port; 0 picks a free one. @default 0 */
  port?: number;
}

/** A running `/metrics` HTTP endpoint. */
export interface MetricsServer {
  port: number;
  address: string;
  shutdown(): Promise<void>;
}

/**
 * Serves the registry in the Prometheus text format on `GET /metrics`
 * (and a plain `ok` on `GET /healthz`); anything else is 404.
 */
export async function startMetricsServer(options: MetricsServerOptions): Promise<MetricsServer> {
  const { registry } = options;
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end('method not allowed: use GET\n');
      return;
    }
    if (path === '/metrics') {
      // Calls answered but not yet counted (see afterWrites) are counted first: a scrape sees every answered call.
      drainAfterWrites();
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err: unknown) => res.writeHead(500).end(`metrics collection failed: ${String(err)}\n`),
      );
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are served at /metrics\n');
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    address: `${host}:${port}`,
    shutdown: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
