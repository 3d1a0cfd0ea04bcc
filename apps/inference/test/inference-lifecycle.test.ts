import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { ConsulDiscovery, ConsulRegistrar, SERVICE_INFERENCE } from '@maas/discovery';
import { InferenceServiceClient, type PredictResponse } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { callUnary } from '@maas/rpc';
import { mlpModel, startChild, startConsulDouble, tempDir, waitFor, type ConsulDouble } from '@maas/testing';
import { loadRegistryConfig } from '../../registry/src/config';
import { startRegistry, type RegistryApp } from '../../registry/src/registry-app';
import { floatTensor, startNodeFixture, type NodeFixture } from './node-fixture';

describe('inference node registration in Consul', () => {
  let consul: ConsulDouble;
  let f: NodeFixture | undefined;
  let discovery: ConsulDiscovery;
  beforeEach(async () => {
    consul = await startConsulDouble();
    discovery = new ConsulDiscovery({ address: consul.address, waitSeconds: 1, minBackoffMs: 50 });
  });
  afterEach(async () => {
    await discovery.shutdown();
    await f?.stop();
    await consul.stop();
  });

  it('registers with a gRPC health check, drops out when NOT_SERVING, and deregisters on shutdown', async () => {
    const registrar = new ConsulRegistrar(consul.address);
    f = await startNodeFixture({ nodeId: 'node-1', tags: ['cpu'] }, registrar);
    // Like Consul, the double runs the first gRPC check as the service registers.
    await waitFor(() => consul.services().get('node-1') !== undefined);
    expect(consul.services().get('node-1')).toMatchObject({ name: SERVICE_INFERENCE, port: f.node.port, tags: ['cpu'] });
    expect(consul.services().get('node-1')!.meta).toMatchObject({ node_id: 'node-1', capacity_bytes: String(2 * 1024 ** 3) });
    // Its check starts critical and first runs within one interval (5 s), as in Consul.
    await waitFor(() => discovery.instances(SERVICE_INFERENCE).length === 1, { description: 'node to pass its health check', timeoutMs: 15_000 });

    // Consul's next gRPC check run (every 5 s) finds it NOT_SERVING.
    f.node.server.setServing(false);
    await waitFor(() => discovery.instances(SERVICE_INFERENCE).length === 0, { description: 'node to drop out', timeoutMs: 15_000 });

    await f.stop();
    f = undefined;
    await waitFor(() => !consul.services().has('node-1'), { description: 'deregistration' });
  });
});

describe('inference node process', () => {
  let registry: RegistryApp;
  const dirs = [tempDir('maas-registry-'), tempDir('maas-node-')];
  beforeAll(async () => {
    registry = await startRegistry(loadRegistryConfig({}, { port: 0, dataDir: dirs[0].path }));
  });
  afterAll(async () => {
    await registry.shutdown(1000);
    dirs.forEach((d) => d.remove());
  });

  it('drains in-flight requests on SIGTERM and exits 0', async () => {
    const client = new RegistryClient(registry.address);
    await client.createModel('slow');
    // Requests wait up to 500 ms for company, so they are in flight when the signal lands.
    const version = await client.upload(
      { model: 'slow', description: '', sha256: '', sizeBytes: 0, runtime: { maxBatchSize: 64, maxQueueDelayMicros: 500_000, instanceCount: 1, maxQueueSize: 100 }, aliases: [] },
      [mlpModel()],
    );
    client.close();
    const child = await startChild({
      entry: 'apps/inference/src/main.ts',
      env: { INFERENCE_PORT: '0', REGISTRY_ADDRESS: registry.address, INFERENCE_CACHE_DIR: dirs[1].path, CONSUL_HTTP_ADDR: '', LOG_LEVEL: 'info' },
      readyWhen: (line) => line.json?.msg === 'listening',
      name: 'inference',
    });
    const port = child.lines.find((l) => l.json?.msg === 'listening')!.json!.port as number;
    const node = new InferenceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      await callUnary(node.loadModel.bind(node), { model: 'slow', version: version.version });
      const inFlight: Array<Promise<PredictResponse>> = Array.from({ length: 6 }, () =>
        callUnary(node.predict.bind(node), { model: 'slow', version: version.version, alias: '', inputs: [floatTensor('input', [1, 4], [1, 2, 3, 4])], outputNames: [], sha256: '' }),
      );
      await waitFor(async () => (await callUnary(node.listLoaded.bind(node), {})).models[0]?.queueDepth === 6);
      child.process.kill('SIGTERM');
      const answers = await Promise.all(inFlight);
      expect(answers.every((a) => a.outputs.length === 1)).toBe(true);
      expect(await child.exited).toBe(0);
      // Nothing new is accepted once it is gone.
      const late = await callUnary(node.listLoaded.bind(node), {}, { timeoutMs: 500 }).catch((err: ServiceError) => err.code);
      expect([status.UNAVAILABLE, status.DEADLINE_EXCEEDED]).toContain(late);
    } finally {
      node.close();
      await child.stop('SIGKILL');
    }
  });
});
