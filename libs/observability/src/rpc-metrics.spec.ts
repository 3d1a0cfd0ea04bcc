import { connect } from 'node:http2';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { InferenceServiceClient, InferenceServiceService, type InferenceServiceServer, type ModelMetadataResponse } from '@maas/proto';
import { GrpcServer, NotFoundError, unary } from '@maas/rpc';
import { createMetricsRegistry } from './metrics-registry';
import { startMetricsServer, type MetricsServer } from './metrics-server';
import { rpcInterceptor } from './rpc-interceptor';
import { RpcMetrics } from './rpc-metrics';

describe('rpcInterceptor feeding RpcMetrics', () => {
  let server: GrpcServer;
  let metricsServer: MetricsServer;
  let client: InstanceType<typeof InferenceServiceClient>;

  beforeAll(async () => {
    const registry = createMetricsRegistry('test', { defaultMetrics: false });
    const metrics = new RpcMetrics(registry);
    server = new GrpcServer({ interceptors: [rpcInterceptor({ metrics })] });
    const notImplemented = () => Promise.reject(new Error('not part of this test'));
    const impl: InferenceServiceServer = {
      predict: unary('Predict', notImplemented),
      modelMetadata: unary('ModelMetadata', async (request: { model: string; version: number }) => {
        if (request.model !== 'mlp') throw new NotFoundError(`model "${request.model}" is not loaded`);
        return { model: 'mlp', version: 3, inputs: [], outputs: [], runtime: undefined, state: 1, sha256: '' } satisfies ModelMetadataResponse;
      }),
      loadModel: unary('LoadModel', notImplemented),
      unloadModel: unary('UnloadModel', notImplemented),
      listLoaded: unary('ListLoaded', notImplemented),
    };
    server.addService('maas.v1.InferenceService', InferenceServiceService, impl);
    const port = await server.start();
    metricsServer = await startMetricsServer({ registry });
    client = new InferenceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  });

  afterAll(async () => {
    client.close();
    await server.shutdown(1000);
    await metricsServer.shutdown();
  });

  const metadata = (model: string) =>
    new Promise<ServiceError | null>((resolve) => {
      client.modelMetadata({ model, version: 3, alias: '' }, (err) => resolve(err));
    });

  it('counts calls by method, model, version and status code, and times them', async () => {
    expect(await metadata('mlp')).toBeNull();
    expect(await metadata('mlp')).toBeNull();
    expect((await metadata('nope'))?.code).toBe(status.NOT_FOUND);

    const body = await (await fetch(`http://${metricsServer.address}/metrics`)).text();
    expect(body).toContain('maas_rpc_requests_total{method="ModelMetadata",model="mlp",version="3",code="OK",service="test"} 2');
    // A name the server did not know is not turned into a label value.
    expect(body).toContain('maas_rpc_requests_total{method="ModelMetadata",model="",version="",code="NOT_FOUND",service="test"} 1');
    expect(body).toMatch(/maas_rpc_duration_seconds_count\{service="test",method="ModelMetadata",model="mlp",code="OK"\} 2/);
  });

  it('answers 404 off /metrics and 405 for writes', async () => {
    expect((await fetch(`http://${metricsServer.address}/other`)).status).toBe(404);
    expect((await fetch(`http://${metricsServer.address}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('counts a call whose client gave up before sending its message as CANCELLED or DEADLINE_EXCEEDED, not UNIMPLEMENTED', async () => {
    // What a client that cancels early puts on the wire: headers, then the end of its stream, no message.
    const session = connect(`http://127.0.0.1:${server.port}`);
    const endEarly = (timeout?: string) =>
      new Promise<void>((resolve) => {
        const stream = session.request({
          ':method': 'POST',
          ':path': '/maas.v1.InferenceService/ModelMetadata',
          'content-type': 'application/grpc',
          te: 'trailers',
          ...(timeout ? { 'grpc-timeout': timeout } : {}),
        });
        stream.on('response', () => undefined).on('data', () => undefined);
        stream.on('close', () => resolve());
        stream.end();
      });
    await endEarly();
    await endEarly('1n');
    session.close();
    const body = await (await fetch(`http://${metricsServer.address}/metrics`)).text();
    expect(body).not.toMatch(/method="ModelMetadata"[^\n]*code="UNIMPLEMENTED"/);
    expect(body).toMatch(/maas_rpc_requests_total\{method="ModelMetadata",model="",version="",code="CANCELLED",service="test"\} 1/);
    expect(body).toMatch(/maas_rpc_requests_total\{method="ModelMetadata",model="",version="",code="DEADLINE_EXCEEDED",service="test"\} 1/);
  });
});
