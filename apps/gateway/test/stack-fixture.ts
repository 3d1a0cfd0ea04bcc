import { credentials, Metadata } from '@grpc/grpc-js';
import { ConsulDiscovery, SERVICE_INFERENCE } from '@maas/discovery';
import { GatewayServiceClient, InferenceServiceClient, type RuntimeConfig } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { defaultClientOptions } from '@maas/rpc';
import { startChild, startConsulDouble, startRedis, tempDir, waitFor, type ConsulDouble, type TestChild, type TestRedis } from '@maas/testing';
import { loadRegistryConfig } from '../../registry/src/config';
import { startRegistry, type RegistryApp } from '../../registry/src/registry-app';
import { generateApiKey, hashApiKey } from '@maas/auth';
import { loadGatewayConfig, type GatewayConfig } from '../src/config';
import { startGateway, type GatewayApp } from '../src/gateway-app';

/** A node process of the stack. */
export interface NodeProcess {
  id: string;
  child: TestChild;
  port: number;
  client: InstanceType<typeof InferenceServiceClient>;
}

/**
 * The whole stack on loopback: real Redis, the Consul double, a registry,
 * two inference node processes registered in Consul, and a gateway that
 * discovers them, with one predict key and one admin key.
 */
export interface Stack {
  redis: TestRedis;
  consul: ConsulDouble;
  registry: RegistryApp;
  nodes: NodeProcess[];
  /** The current gateway (replaced by {@link restartGateway}). */
  gateway: GatewayApp;
  keys: { predict: string; admin: string; limited: string };
  /** Gateway clients carrying a key. */
  client(key?: string): { gateway: InstanceType<typeof GatewayServiceClient>; registry: RegistryClient };
  /** Creates (if needed) and uploads a model through the gateway as admin; returns the version. */
  push(model: string, bytes: Buffer, runtime?: Partial<RuntimeConfig>, aliases?: string[]): Promise<number>;
  /** Shuts the gateway down and starts a new one on the same port, as a redeploy would. */
  restartGateway(): Promise<void>;
  stop(): Promise<void>;
}

const bearer = (key: string) => () => {
  const md = new Metadata();
  md.set('authorization', `Bearer ${key}`);
  return md;
};

async function startNode(id: string, registryAddress: string, consulAddress: string, cacheDir: string): Promise<NodeProcess> {
  const child = await startChild({
    entry: 'apps/inference/src/main.ts',
    env: {
      INFERENCE_PORT: '0',
      INFERENCE_NODE_ID: id,
      INFERENCE_CACHE_DIR: cacheDir,
      REGISTRY_ADDRESS: registryAddress,
      CONSUL_HTTP_ADDR: consulAddress,
      LOG_LEVEL: 'debug',
    },
    readyWhen: (line) => line.json?.msg === 'listening',
    name: id,
  });
  const port = child.lines.find((l) => l.json?.msg === 'listening')!.json!.port as number;
  return { id, child, port, client: new InferenceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure()) };
}

export async function startStack(gatewayOverrides: Partial<GatewayConfig> = {}): Promise<Stack> {
  const dirs = [tempDir('maas-registry-'), tempDir('maas-node-a-'), tempDir('maas-node-b-')];
  const redis = await startRedis();
  const consul = await startConsulDouble();
  const registry = await startRegistry(loadRegistryConfig({}, { port: 0, dataDir: dirs[0].path, redisUrl: redis.url }));
  const nodes = await Promise.all([
    startNode('node-a', registry.address, consul.address, dirs[1].path),
    startNode('node-b', registry.address, consul.address, dirs[2].path),
  ]);
  const keys = { predict: generateApiKey(), admin: generateApiKey(), limited: generateApiKey() };
  const launchGateway = async (port: number) => {
    const discovery = new ConsulDiscovery({ address: consul.address, waitSeconds: 2, minBackoffMs: 50 });
    const app = await startGateway(
    loadGatewayConfig(
      {},
      {
        port,
        httpPort: 0,
        redisUrl: redis.url,
        registryAddress: registry.address,
        consulAddress: consul.address,
        apiKeys: JSON.stringify([
          { id: 'app', sha256: hashApiKey(keys.predict), scopes: ['predict'], ratePerSecond: 10_000 },
          { id: 'ops', sha256: hashApiKey(keys.admin), scopes: ['admin'], ratePerSecond: 10_000 },
          { id: 'tiny', sha256: hashApiKey(keys.limited), scopes: ['predict'], ratePerSecond: 1, burst: 2 },
        ]),
        ...gatewayOverrides,
      },
    ),
    { discovery },
  );
    await waitFor(() => discovery.instances(SERVICE_INFERENCE).length === 2, { description: 'both nodes healthy in consul' });
    return app;
  };
  let gateway = await launchGateway(0);
  const clients: Array<{ close(): void }> = [];
  const client = (key?: string) => {
    const metadata = key ? bearer(key) : undefined;
    const gw = new GatewayServiceClient(gateway.address, credentials.createInsecure(), defaultClientOptions());
    const reg = new RegistryClient(gateway.address, { metadata });
    clients.push(gw, reg);
    // Attach the key to every gateway call through a call interceptor-free wrapper: callers pass metadata().
    return { gateway: gw, registry: reg };
  };
  const admin = client(keys.admin).registry;
  const created = new Set<string>();
  return {
    redis,
    consul,
    registry,
    nodes,
    get gateway() {
      return gateway;
    },
    keys,
    client,
    async restartGateway() {
      const port = gateway.port;
      await gateway.shutdown(1000);
      gateway = await launchGateway(port);
    },
    async push(model, bytes, runtime = {}, aliases = []) {
      if (!created.has(model)) {
        await admin.createModel(model).catch(() => undefined);
        created.add(model);
      }
      const full: RuntimeConfig = { maxBatchSize: 0, maxQueueDelayMicros: 0, instanceCount: 0, maxQueueSize: 0, ...runtime };
      return (await admin.upload({ model, description: '', sha256: '', sizeBytes: 0, runtime: full, aliases }, [bytes])).version;
    },
    async stop() {
      clients.forEach((c) => c.close());
      await gateway.shutdown(1000);
      await Promise.all(nodes.map(async (n) => (n.client.close(), await n.child.stop('SIGTERM'))));
      await registry.shutdown(1000);
      await consul.stop();
      await redis.stop();
      dirs.forEach((d) => d.remove());
    },
  };
}

/** Metadata carrying a bearer key. */
export function withKey(key: string): Metadata {
  return bearer(key)();
}
