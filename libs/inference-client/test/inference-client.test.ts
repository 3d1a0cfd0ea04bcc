import { credentials, status } from '@grpc/grpc-js';
import { join } from 'node:path';
import { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';
import { homeNodes } from '@maas/discovery';
import { DataType, InferenceServiceClient, type PredictRequest } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { callUnary, statusOf } from '@maas/rpc';
import { mlpModel, startService, tempDir, type TestService } from '@maas/testing';
import { InferenceClient } from '../src';

/**
 * The typed client for internal callers against a registry and three real
 * node processes: answers equal onnxruntime's, calls land on the gateway's
 * home nodes, a dead home fails over, and a frozen one cannot hold a call
 * past its deadline.
 */
describe('InferenceClient against real nodes', () => {
  const dir = tempDir('maas-inference-client-');
  const model = mlpModel({ seed: 7 });
  let registry: TestService;
  const nodes: TestService[] = [];
  let client: InferenceClient;
  let version: number;

  const request = (values: number[]): PredictRequest => ({
    model: 'direct',
    version: 0,
    alias: '',
    inputs: [{ name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [values.length / 4, 4], rawData: Buffer.from(new Float32Array(values).buffer), stringData: [] }],
    outputNames: [],
    sha256: '',
  });

  beforeAll(async () => {
    registry = await startService('registry', 'apps/registry/src/main.ts', { REGISTRY_PORT: '0', REGISTRY_DATA_DIR: join(dir.path, 'registry'), REDIS_URL: '', CONSUL_HTTP_ADDR: '' });
    for (const id of ['a', 'b', 'c']) {
      nodes.push(
        await startService(`node-${id}`, 'apps/inference/src/main.ts', {
          INFERENCE_PORT: '0',
          INFERENCE_NODE_ID: `node-${id}`,
          INFERENCE_CACHE_DIR: join(dir.path, id),
          REGISTRY_ADDRESS: registry.address,
          REDIS_URL: '',
          CONSUL_HTTP_ADDR: '',
        }),
      );
    }
    const admin = new RegistryClient(registry.address);
    await admin.createModel('direct');
    version = (await admin.upload({ model: 'direct', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: ['production'] }, [model])).version;
    admin.close();
    client = new InferenceClient({ nodes: nodes.map((n) => n.address), defaultTimeoutMs: 20_000 });
  }, 90_000);

  afterAll(async () => {
    await client?.close();
    for (const n of nodes) {
      if (n.child.process.exitCode === null && n.child.process.signalCode === null) process.kill(n.child.pid!, 'SIGCONT');
    }
    await Promise.all([...nodes, registry].filter(Boolean).map((s) => s.child.stop('SIGTERM').catch(() => s.child.stop('SIGKILL'))));
    dir.remove();
  });

  it("answers as onnxruntime does and lands on the version's home nodes, as the gateway ranks them", async () => {
    const values = [1, 2, 3, 4, -1, 0.5, 0, 2];
    const session = await InferenceSession.create(model);
    const expected = (await session.run({ input: new OrtTensor('float32', Float32Array.from(values), [2, 4]) })).output.data as Float32Array;
    await session.release();
    for (let i = 0; i < 6; i++) {
      const answer = await client.predict(request(values));
      expect({ model: answer.model, version: answer.version }).toEqual({ model: 'direct', version });
      const out = answer.outputs[0];
      expect(Buffer.from(out.rawData)).toEqual(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength));
    }
    // The same answer through grpc-js, as over TLS (raw: false).
    const viaGrpcJs = new InferenceClient({ nodes: nodes.map((n) => n.address), defaultTimeoutMs: 20_000, raw: false });
    try {
      const answer = await viaGrpcJs.predict(request(values));
      expect({ model: answer.model, version: answer.version }).toEqual({ model: 'direct', version });
      expect(Buffer.from(answer.outputs[0].rawData)).toEqual(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength));
    } finally {
      await viaGrpcJs.close();
    }
    // Which nodes loaded it: only homes (after the first call, which no rank could know, ranked by the model's name).
    const homes = new Set(homeNodes('direct', version, client.nodeIds, 2));
    const holders: string[] = [];
    for (const node of nodes) {
      const probe = new InferenceServiceClient(node.address, credentials.createInsecure());
      const { models } = await callUnary(probe.listLoaded.bind(probe), {}, { timeoutMs: 5000 });
      probe.close();
      if (models.some((m) => m.model === 'direct')) holders.push(node.address);
    }
    expect(holders.filter((h) => !homes.has(h)).length).toBeLessThanOrEqual(1);
    expect(holders.some((h) => homes.has(h))).toBe(true);
  });

  it('fails over when a home node is killed, with no failed call', async () => {
    const homes = homeNodes('direct', version, client.nodeIds, 2);
    const victim = nodes.find((n) => n.address === homes[0])!;
    await victim.child.stop('SIGKILL');
    for (let i = 0; i < 10; i++) expect((await client.predict(request([1, 2, 3, 4]))).version).toBe(version);
  });

  it('ends a call held by a frozen node at its deadline, not later', async () => {
    const alive = nodes.filter((n) => n.child.process.exitCode === null && n.child.process.signalCode === null);
    for (const n of alive) process.kill(n.child.pid!, 'SIGSTOP');
    const started = Date.now();
    try {
      await client.predict(request([1, 2, 3, 4]), { timeoutMs: 500 });
      throw new Error('a frozen stack answered');
    } catch (err) {
      expect(statusOf(err)).toBe(status.DEADLINE_EXCEEDED);
    } finally {
      for (const n of alive) process.kill(n.child.pid!, 'SIGCONT');
    }
    expect(Date.now() - started).toBeLessThan(2000);
    expect((await client.predict(request([1, 2, 3, 4]), { timeoutMs: 10_000 })).version).toBe(version);
  });

  it('refuses to start without a way to find nodes', () => {
    expect(() => new InferenceClient({})).toThrow(/consulAddress, nodes or a discovery/);
  });
});
