import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GrpcServer } from '@maas/rpc';
import { parseConsulDuration, startConsulDouble, waitFor, type ConsulDouble } from '@maas/testing';
import { ConsulClient } from './consul-client';
import { ConsulDiscovery, nextIndex } from './discovery-consul';
import { StaticDiscovery } from './discovery-static';
import { checkAdvertisedHost, ConsulRegistrar } from './registrar';
import type { ServiceInstance } from './discovery';

/** Consul's shortest check interval (shorter ones run at 1 s). */
const fastCheck = { intervalSeconds: 1, timeoutSeconds: 1 };

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

    // Consul's floor: anything below a minute is a minute; its reaper runs every 30 s (the double's clock is moved on).
    await register('node-b', 0.3);
    await waitFor(() => consul.services().get('node-b')?.status === 'passing');
    await node.shutdown(100);
    await waitFor(() => consul.services().get('node-b')?.status === 'critical', { description: 'node-b critical' });
    consul.advanceClock(30_000);
    expect(consul.services().has('node-b')).toBe(true);
    consul.advanceClock(31_000);
    expect(consul.services().has('node-b')).toBe(false);
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

  it('registers again what the agent lost (restarted empty, deregistered by an operator)', async () => {
    const healing = new ConsulRegistrar(consul.address, { antiEntropyMs: 200 });
    try {
      await healing.register({ name: 'maas-inference', id: 'node-h', address: '127.0.0.1', port: node.port, check: fastCheck });
      consul.forget('node-h');
      expect(consul.services().has('node-h')).toBe(false);
      await waitFor(() => consul.services().has('node-h'), { description: 'the registration to come back' });
      await waitFor(() => discovery.instances('maas-inference').some((i) => i.id === 'node-h'), { description: 'the node to be healthy again' });
    } finally {
      await healing.shutdown();
    }
  });

  it('keeps a check status across a registration of the same ID, as Consul does', async () => {
    await register('node-k');
    await waitFor(() => consul.services().get('node-k')?.status === 'passing');
    await register('node-k');
    expect(consul.services().get('node-k')?.status).toBe('passing');
  });

  it('refuses addresses Consul refuses or nobody else could reach', async () => {
    const client = new ConsulClient(consul.address);
    await expect(client.register({ name: 'x', id: 'x', address: '0.0.0.0', port: 1, tags: [], meta: {} })).rejects.toThrow(/Invalid service address/);
    await expect(registrar.register({ name: 'x', id: 'x', address: '::', port: 1, advertiseVariable: 'INFERENCE_ADVERTISE_ADDRESS' })).rejects.toThrow(/unspecified address .* set INFERENCE_ADVERTISE_ADDRESS/);
    expect(() => checkAdvertisedHost('127.0.0.1', 'consul:8500', 'REGISTRY_ADVERTISE_ADDRESS')).toThrow(/loopback address .* unreachable .* set REGISTRY_ADVERTISE_ADDRESS/);
    expect(() => checkAdvertisedHost('127.0.0.1', '127.0.0.1:8500', 'X')).not.toThrow();
    expect(() => checkAdvertisedHost('10.0.0.5', 'consul:8500', 'X')).not.toThrow();
    // Deregistering an ID the agent does not hold is a 200.
    await expect(client.deregister('never-registered')).resolves.toBeUndefined();
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

describe('Consul with ACLs', () => {
  it('answers 403 without the token, and registration and discovery work with it', async () => {
    const consul = await startConsulDouble({ aclToken: 's3cret' });
    const node = new GrpcServer();
    await node.start();
    const anonymous = new ConsulRegistrar(consul.address);
    const registrar = new ConsulRegistrar(consul.address, { token: 's3cret' });
    const discovery = new ConsulDiscovery({ address: consul.address, token: 's3cret', waitSeconds: 1 });
    try {
      await expect(anonymous.register({ name: 'maas-inference', id: 'n', address: '127.0.0.1', port: node.port, check: fastCheck })).rejects.toThrow(/Permission denied/);
      await registrar.register({ name: 'maas-inference', id: 'n', address: '127.0.0.1', port: node.port, check: fastCheck });
      await waitFor(() => discovery.instances('maas-inference').length === 1, { description: 'discovery with the token' });
      expect(consul.requests()['/v1/agent/service']).toBeGreaterThanOrEqual(2);
    } finally {
      await discovery.shutdown();
      await registrar.shutdown();
      await node.shutdown(100);
      await consul.stop();
    }
  });
});

describe('blocking-query edge cases', () => {
  it('never sends an index of 0 or none, and starts over when it goes backwards', () => {
    expect(nextIndex('', '0')).toBe('1');
    expect(nextIndex('12', '')).toBe('1');
    expect(nextIndex('12', 'abc')).toBe('1');
    expect(nextIndex('12', '9')).toBe('');
    expect(nextIndex('12', '15')).toBe('15');
  });

  it('rate-limits the watch loop when a proxy answers at once, again and again', async () => {
    let hits = 0;
    const proxy = createServer((_req, res) => {
      hits += 1;
      res.writeHead(200, { 'content-type': 'application/json', 'x-consul-index': '0' });
      res.end('[]');
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const discovery = new ConsulDiscovery({ address: `127.0.0.1:${(proxy.address() as AddressInfo).port}`, waitSeconds: 30 });
    try {
      discovery.instances('maas-inference');
      await new Promise((resolve) => setTimeout(resolve, 1000));
      // 10 a second after a burst of 3: never a spin.
      expect(hits).toBeGreaterThanOrEqual(5);
      expect(hits).toBeLessThanOrEqual(14);
    } finally {
      await discovery.shutdown();
      proxy.closeAllConnections();
      proxy.close();
    }
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
