import { readFileSync } from 'node:fs';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { DataType, GatewayServiceClient } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { callUnary } from '@maas/rpc';
import { freePort, paddedModel, startChild, tempDir, type TestChild } from '@maas/testing';
import { loadRegistryConfig } from '../../registry/src/config';
import { startRegistry, type RegistryApp } from '../../registry/src/registry-app';

/** Resident and peak resident memory of a process, from /proc. */
function memoryOf(pid: number): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)![1]) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

describe('gateway process with a registry and no inference node', () => {
  let registry: RegistryApp;
  let gateway: TestChild;
  let address: string;
  const dir = tempDir('maas-registry-');

  beforeAll(async () => {
    // Only the structural check at upload: this test is about the gateway's memory, not onnxruntime's.
    registry = await startRegistry(loadRegistryConfig({}, { port: 0, dataDir: dir.path, maxUploadBytes: 256 * 1024 * 1024, verifyMaxBytes: 1024 * 1024 }));
    const deadNode = `127.0.0.1:${await freePort()}`;
    gateway = await startChild({
      entry: 'apps/gateway/src/main.ts',
      env: { GATEWAY_PORT: '0', GATEWAY_AUTH: 'off', REGISTRY_ADDRESS: registry.address, INFERENCE_NODES: deadNode, CONSUL_HTTP_ADDR: '', REDIS_URL: '', LOG_LEVEL: 'info' },
      readyWhen: (line) => line.json?.msg === 'listening',
      name: 'gateway',
    });
    address = `127.0.0.1:${gateway.lines.find((l) => l.json?.msg === 'listening')!.json!.port as number}`;
  });
  afterAll(async () => {
    expect(await gateway.stop('SIGTERM')).toBe(0);
    await registry.shutdown(1000);
    dir.remove();
  });

  it('says it runs without auth', () => {
    expect(gateway.lines.some((l) => l.json?.level === 40 && /auth is OFF/.test(String(l.json?.msg)))).toBe(true);
  });

  it('streams a 96 MiB upload through without holding it (RSS grows far less than the model)', async () => {
    const bytes = paddedModel(96 * 1024 * 1024);
    const client = new RegistryClient(address);
    await client.createModel('big');
    const before = memoryOf(gateway.pid);
    const version = await client.upload({ model: 'big', description: '', sha256: '', sizeBytes: bytes.length, runtime: undefined, aliases: [] }, [bytes]);
    const after = memoryOf(gateway.pid);
    client.close();
    expect(version.sizeBytes).toBe(bytes.length);
    // Peak growth during the upload stays well under the artifact size.
    console.log(`gateway peak RSS growth: ${((after.hwm - before.hwm) / 1048576).toFixed(1)} MiB`);
    expect(after.hwm - before.hwm).toBeLessThan(48 * 1024 * 1024);
  });

  it('answers UNAVAILABLE naming the model when no node can take the request', async () => {
    const client = new RegistryClient(address);
    await client.upload({ model: 'big', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: ['production'] }, [paddedModel(1024)]);
    client.close();
    const gw = new GatewayServiceClient(address, credentials.createInsecure());
    const input = { name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, 4], rawData: Buffer.alloc(16), stringData: [] };
    const err = (await callUnary(gw.predict.bind(gw), { model: 'big', version: 0, alias: '', inputs: [input], outputNames: [], sha256: '' }).catch((e: ServiceError) => e)) as ServiceError;
    gw.close();
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(err.details).toMatch(/big:2/);
  });
});
