import { GrpcServer } from '@maas/rpc';
import { parseConsulDuration, startConsulDouble, waitFor, type ConsulDouble } from '@maas/testing';
import { ConsulClient } from './consul-client';
import { ConsulDiscovery } from './discovery-consul';
import { StaticDiscovery } from './discovery-static';
import { ConsulRegistrar } from './registrar';
import type { ServiceInstance } from './discovery';

const fastCheck = { intervalSeconds: 0.1, timeoutSeconds: 1, deregisterCriticalAfterSeconds: 1 };

describe('Consul discovery against the Consul API double', () => {
  let consul: ConsulDouble;
  let node: GrpcServer;
  let discovery: ConsulDiscovery;
  let registrar: ConsulRegistrar;

  beforeEach(async () => {
    consul = await startConsulDouble();
    node = new GrpcServer();
    await node.start();
    discovery = new ConsulDiscovery({ address: consul.address, waitSeconds: 1, minBackoffMs: 50, maxBackoffMs: 200 });
    registrar = new ConsulRegistrar(consul.address);
  });
  afterEach(async () => {
    await discovery.shutdown();
    await registrar.shutdown();
    await node.shutdown(100);
    await consul.stop();
  });

  const register = (id = 'node-a', deregisterAfter = 60) =>
    registrar.register({
      name: 'maas-inference',
      id,
      address: '127.0.0.1',
      port: node.port,
      tags: ['cpu'],
      meta: { capacity_bytes: '1024' },
      check: { ...fastCheck, deregisterCriticalAfterSeconds: deregisterAfter },
    });

  it('sees a registered node once its gRPC health check passes, with tags and meta', async () => {
    const seen: ServiceInstance[][] = [];
    discovery.watch('maas-inference', (instances) => seen.push(instances));
    expect(await discovery.ready('maas-inference')).toEqual([]);
    await register();
    await waitFor(() => discovery.instances('maas-inference').length === 1, { description: 'node to turn healthy' });
    expect(discovery.instances('maas-inference')[0]).toEqual({
      id: 'node-a',
      address: `127.0.0.1:${node.port}`,
      host: '127.0.0.1',
      port: node.port,
      tags: ['cpu'],
      meta: { capacity_bytes: '1024' },
    });
    expect(seen.map((s) => s.length)).toEqual([0, 1]);
  });

  it('drops a node whose health turns NOT_SERVING and takes it back when it serves again', async () => {
    await register();
    await waitFor(() => discovery.instances('maas-inference').length === 1);
    node.setServing(false);
    await waitFor(() => discovery.instances('maas-inference').length === 0, { description: 'node to be dropped' });
    expect(consul.services().get('node-a')?.status).toBe('critical');
    node.setServing(true);
    await waitFor(() => discovery.instances('maas-inference').length === 1, { description: 'node to come back' });
  });

  it('removes a deregistered node, and Consul removes one critical for longer than DeregisterCriticalServiceAfter', async () => {
    await register('node-a');
    await waitFor(() => discovery.instances('maas-inference').length === 1);
    await registrar.deregister('node-a');
    await waitFor(() => discovery.instances('maas-inference').length === 0);
    expect(consul.services().has('node-a')).toBe(false);

    await register('node-b', 0.3);
    await waitFor(() => consul.services().get('node-b')?.status === 'passing');
    await node.shutdown(100);
    await waitFor(() => !consul.services().has('node-b'), { description: 'critical node to be deregistered by consul', timeoutMs: 10_000 });
  });

  it('keeps the last known set while Consul is unreachable and recovers after', async () => {
    await register();
    await waitFor(() => discovery.instances('maas-inference').length === 1);
    const port = consul.port;
    await consul.stop();
    // Queries fail now; the set must not empty.
    await waitFor(() => discovery.watchState('maas-inference').consecutiveFailures >= 2, { description: 'queries to fail' });
    expect(discovery.instances('maas-inference')).toHaveLength(1);
    consul = await startConsulDouble({ port });
    await registrar.register({ name: 'maas-inference', id: 'node-c', address: '127.0.0.1', port: node.port, check: fastCheck });
    await waitFor(() => discovery.instances('maas-inference').map((i) => i.id).join() === 'node-c', { description: 'recovery', timeoutMs: 10_000 });
  });

  it('uses blocking queries: an unchanged service holds the request for the wait', async () => {
    const client = new ConsulClient(consul.address);
    const first = await client.healthyInstances('nothing-here', '', 1);
    const started = Date.now();
    const second = await client.healthyInstances('nothing-here', first.index, 0.3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(Number(second.index)).toBeGreaterThanOrEqual(Number(first.index));
  });
});

describe('StaticDiscovery', () => {
  it('serves its fixed list at once', async () => {
    const discovery = new StaticDiscovery({ 'maas-inference': ['127.0.0.1:1', '[::1]:2'] });
    expect((await discovery.ready('maas-inference')).map((i) => [i.host, i.port])).toEqual([['127.0.0.1', 1], ['::1', 2]]);
    expect(discovery.instances('other')).toEqual([]);
  });
});

describe('parseConsulDuration', () => {
  it('reads Consul duration strings', () => {
    expect(parseConsulDuration('1m30s')).toBe(90_000);
    expect(parseConsulDuration('250ms')).toBe(250);
    expect(() => parseConsulDuration('soon')).toThrow(/invalid duration/);
  });
});
