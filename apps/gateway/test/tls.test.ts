import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { credentials, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { DataType, GatewayServiceClient } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { callUnary, clientCredentials, defaultClientOptions } from '@maas/rpc';
import { generateTestCertificates, mlpModel, startChild, tempDir, type TestCertificates, type TestChild } from '@maas/testing';
import { loadRegistryConfig } from '../../registry/src/config';
import { startRegistry, type RegistryApp } from '../../registry/src/registry-app';
import { loadGatewayConfig } from '../src/config';
import { startGateway, type GatewayApp } from '../src/gateway-app';

const request = {
  model: 'secure',
  version: 0,
  alias: '',
  inputs: [{ name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, 4], rawData: Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), stringData: [] }],
  outputNames: [],
  sha256: '',
};

describe('TLS with client certificates between every service (registry, node process, gateway)', () => {
  const dirs = [tempDir('maas-tls-'), tempDir('maas-tls-registry-'), tempDir('maas-tls-node-')];
  let certs: TestCertificates;
  let rogue: TestCertificates;
  let registry: RegistryApp;
  let node: TestChild;
  let gateway: GatewayApp;
  const clients: Array<{ close(): void }> = [];

  const tlsConfig = () => ({ tlsCertFile: certs.certFile, tlsKeyFile: certs.keyFile, tlsCaFile: certs.caFile, tlsClientAuth: 'require' as const });
  const gatewayClient = (channel: ChannelCredentials) => {
    const client = new GatewayServiceClient(gateway.address, channel, defaultClientOptions());
    clients.push(client);
    return client;
  };
  const predictWith = (channel: ChannelCredentials) => {
    const client = gatewayClient(channel);
    return callUnary(client.predict.bind(client), request, { timeoutMs: 5000 });
  };
  const codeOf = async (promise: Promise<unknown>) => {
    try {
      await promise;
      return status.OK;
    } catch (err) {
      return (err as ServiceError).code;
    }
  };

  beforeAll(async () => {
    certs = generateTestCertificates(dirs[0].path, 'maas');
    rogue = generateTestCertificates(dirs[0].path, 'rogue');
    registry = await startRegistry(loadRegistryConfig({}, { port: 0, dataDir: dirs[1].path, ...tlsConfig() }));
    node = await startChild({
      entry: 'apps/inference/src/main.ts',
      env: {
        INFERENCE_PORT: '0',
        INFERENCE_NODE_ID: 'tls-node',
        INFERENCE_CACHE_DIR: dirs[2].path,
        REGISTRY_ADDRESS: registry.address,
        TLS_CERT_FILE: certs.certFile,
        TLS_KEY_FILE: certs.keyFile,
        TLS_CA_FILE: certs.caFile,
        TLS_CLIENT_AUTH: 'require',
      },
      readyWhen: (line) => line.json?.msg === 'listening',
      name: 'tls-node',
    });
    const nodePort = node.lines.find((l) => l.json?.msg === 'listening')!.json!.port as number;
    gateway = await startGateway(
      loadGatewayConfig({}, { port: 0, httpPort: 0, auth: 'off', registryAddress: registry.address, inferenceNodes: [`127.0.0.1:${nodePort}`], homeNodes: 1, ...tlsConfig() }),
    );
  }, 60_000);
  afterAll(async () => {
    clients.forEach((c) => c.close());
    await gateway?.shutdown(500);
    await node?.stop('SIGTERM');
    await registry?.shutdown(500);
    dirs.forEach((d) => d.remove());
  });

  it('uploads and predicts end to end when the client presents a certificate of the CA', async () => {
    const channel = clientCredentials({ ...certs, clientAuth: 'none' });
    const admin = new RegistryClient(gateway.address, { credentials: channel });
    clients.push(admin);
    await admin.createModel('secure');
    await admin.upload({ model: 'secure', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: ['production'] }, [mlpModel()]);
    const answer = await predictWith(channel);
    expect(answer).toMatchObject({ model: 'secure', version: 1 });
    expect(answer.outputs[0].shape).toEqual([1, 3]);
  });

  it('refuses plaintext clients, clients without a certificate and clients of another CA', async () => {
    expect(await codeOf(predictWith(credentials.createInsecure()))).toBe(status.UNAVAILABLE);
    const noCert = clientCredentials({ certFile: '', keyFile: '', caFile: certs.caFile, clientAuth: 'none' });
    expect(await codeOf(predictWith(noCert))).toBe(status.UNAVAILABLE);
    const otherCa = credentials.createSsl(readFileSync(certs.caFile), readFileSync(rogue.keyFile), readFileSync(rogue.certFile));
    expect(await codeOf(predictWith(otherCa))).toBe(status.UNAVAILABLE);
    // Nor does a TLS node open its plaintext node-frames port beside it, where mTLS would not be asked for.
    const listening = node.lines.find((l) => l.json?.msg === 'listening')!.json!;
    expect(listening.port).toEqual(expect.any(Number));
    expect(listening.framesPort).toBeUndefined();
  });

  it('serves REST over HTTPS with the same certificates, client certificate required (curl)', async () => {
    const url = `https://127.0.0.1:${gateway.httpPort}/v2/models/secure/infer`;
    const body = JSON.stringify({ inputs: [{ name: 'input', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] });
    // The gateway runs in this process: curl must run without blocking its event loop.
    const curl = (...args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile('curl', ['-sS', '--max-time', '20', '--cacert', certs.caFile, ...args], (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }));
      });
    const ok = await curl('--cert', certs.certFile, '--key', certs.keyFile, '-d', body, url);
    expect(ok.stderr).toBe('');
    expect(JSON.parse(ok.stdout)).toMatchObject({ model_name: 'secure', model_version: '1', outputs: [{ shape: [1, 3], datatype: 'FP32' }] });
    // Without a client certificate the handshake fails; plain HTTP gets no answer.
    expect((await curl('-d', body, url)).code).not.toBe(0);
    expect((await curl('-d', body, url.replace('https:', 'http:'))).code).not.toBe(0);
  });

  it('rejects a half-configured TLS setup at start-up, naming what is missing', async () => {
    await expect(startRegistry(loadRegistryConfig({}, { port: 0, dataDir: dirs[1].path, tlsCertFile: certs.certFile }))).rejects.toThrow(/TLS_CERT_FILE and TLS_KEY_FILE/);
    await expect(
      startRegistry(loadRegistryConfig({}, { port: 0, dataDir: dirs[1].path, tlsCertFile: certs.certFile, tlsKeyFile: certs.keyFile, tlsClientAuth: 'require' })),
    ).rejects.toThrow(/TLS_CA_FILE/);
  });
});
