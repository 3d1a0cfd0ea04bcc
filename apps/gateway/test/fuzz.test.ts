import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import fc from 'fast-check';
import { StaticDiscovery, SERVICE_INFERENCE } from '@maas/discovery';
import { DataType, GatewayServiceClient, type ModelVersion, type PredictRequest, type UploadVersionRequest } from '@maas/proto';
import { callUnary } from '@maas/rpc';
import { mlpModel } from '@maas/testing';
import { startNodeFixture, floatTensor, type NodeFixture } from '../../inference/test/node-fixture';
import { loadGatewayConfig } from '../src/config';
import { startGateway, type GatewayApp } from '../src/gateway-app';

const ALLOWED = new Set([status.OK, status.INVALID_ARGUMENT, status.NOT_FOUND, status.RESOURCE_EXHAUSTED]);

describe('random and hostile requests through the gateway', () => {
  let f: NodeFixture;
  let gateway: GatewayApp;
  let client: InstanceType<typeof GatewayServiceClient>;
  let version: number;

  beforeAll(async () => {
    f = await startNodeFixture();
    version = await f.push('fuzz', mlpModel(), { maxBatchSize: 16 }, ['production']);
    gateway = await startGateway(loadGatewayConfig({}, { port: 0, httpPort: 0, auth: 'off', registryAddress: f.registryApp.address }), {
      discovery: new StaticDiscovery({ [SERVICE_INFERENCE]: [f.node.address] }),
    });
    client = new GatewayServiceClient(gateway.address, credentials.createInsecure());
  }, 60_000);

  afterAll(async () => {
    client.close();
    await gateway.shutdown(1000);
    await f.stop();
  });

  const predict = (request: PredictRequest) =>
    callUnary(client.predict.bind(client), request, { timeoutMs: 10_000 }).then(
      () => status.OK,
      (err: ServiceError) => err.code,
    );

  it('answers thousands of random Predict requests with only OK, INVALID_ARGUMENT, NOT_FOUND or RESOURCE_EXHAUSTED, and keeps serving', async () => {
    const name = fc.oneof(fc.constant('fuzz'), fc.constant('ghost'), fc.string({ maxLength: 70 }), fc.constantFrom('../etc/passwd', '/abs', 'ｆｕｚｚ', 'fuzz\u0000', ''));
    const dim = fc.oneof(fc.integer({ min: -3, max: 6 }), fc.constant(0), fc.constant(2 ** 40), fc.constant(4));
    const values = fc.float32Array({ maxLength: 32 }).map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength));
    const tensor = fc.record({
      name: fc.oneof(fc.constant('input'), fc.string({ maxLength: 8 })),
      dtype: fc.integer({ min: 0, max: 14 }) as fc.Arbitrary<DataType>,
      shape: fc.array(dim, { maxLength: 4 }),
      rawData: fc.oneof(values, fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a))),
      stringData: fc.array(fc.string({ maxLength: 4 }), { maxLength: 3 }),
    });
    const request = fc.record({
      model: name,
      version: fc.oneof(fc.constant(0), fc.constant(version), fc.nat(), fc.constant(0xffffffff)),
      alias: fc.oneof(fc.constant(''), fc.constant('production'), fc.string({ maxLength: 10 })),
      inputs: fc.oneof(fc.array(tensor, { maxLength: 3 }), tensor.map((t) => [t, t])),
      outputNames: fc.oneof(fc.constant([] as string[]), fc.array(fc.string({ maxLength: 8 }), { maxLength: 2 })),
    });
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(request, async (req) => {
        const code = await predict(req as PredictRequest);
        seen.set(code, (seen.get(code) ?? 0) + 1);
        return ALLOWED.has(code);
      }),
      { numRuns: 2000 },
    );
    // NaN, infinities and empty batches are data, not errors.
    const nan = floatTensor('input', [2, 4], [NaN, Infinity, -Infinity, 0, 1, 2, 3, 4]);
    expect(await predict({ model: 'fuzz', version: 0, alias: '', inputs: [nan], outputNames: [], sha256: '' })).toBe(status.OK);
    expect(ALLOWED.has(await predict({ model: 'fuzz', version: 0, alias: '', inputs: [floatTensor('input', [0, 4], [])], outputNames: [], sha256: '' }))).toBe(true);
    // Everything is still up and serving.
    expect(await predict({ model: 'fuzz', version: 0, alias: '', inputs: [floatTensor('input', [1, 4], [1, 2, 3, 4])], outputNames: [], sha256: '' })).toBe(status.OK);
    expect(seen.get(status.INVALID_ARGUMENT)).toBeGreaterThan(100);
  });

  it('answers random upload streams with only OK, INVALID_ARGUMENT, NOT_FOUND or RESOURCE_EXHAUSTED', async () => {
    const raw = f.registry.raw;
    const upload = (messages: UploadVersionRequest[]) =>
      new Promise<number>((resolve) => {
        const call = raw.uploadVersion(new Metadata(), { deadline: new Date(Date.now() + 10_000) }, (err: ServiceError | null, _res?: ModelVersion) =>
          resolve(err ? err.code : status.OK),
        );
        for (const m of messages) call.write(m);
        call.end();
      });
    const message = fc.oneof(
      fc.record({ model: fc.oneof(fc.constant('fuzz'), fc.string({ maxLength: 10 })), sha256: fc.oneof(fc.constant(''), fc.stringMatching(/^[0-9a-f]{64}$/), fc.string()) }).map(
        (m): UploadVersionRequest => ({ payload: { $case: 'metadata', value: { ...m, description: '', sizeBytes: 0, runtime: undefined, aliases: [] } } }),
      ),
      fc.uint8Array({ maxLength: 64 }).map((b): UploadVersionRequest => ({ payload: { $case: 'chunk', value: Buffer.from(b) } })),
      fc.constant(mlpModel()).map((b): UploadVersionRequest => ({ payload: { $case: 'chunk', value: b } })),
      fc.constant({ payload: undefined } as UploadVersionRequest),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(message, { maxLength: 5 }), async (messages) => ALLOWED.has(await upload(messages))),
      { numRuns: 300 },
    );
    expect((await f.registry.getModel('fuzz')).name).toBe('fuzz');
  });
});
