import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { InferenceServiceClient, InferenceServiceService, type InferenceServiceServer } from '@maas/proto';
import { GrpcServer, observingInterceptor, unary } from '@maas/rpc';
import { waitFor } from '@maas/testing';
import { Admission } from './admission';
import { intakeShedding } from './intake-shedding';

describe('intakeShedding', () => {
  it('refuses at the headers while the gateway is past what it can answer in time, and only on the methods named', async () => {
    const admission = new Admission({ minInFlight: 1, budgetShare: 1, minAnswers: 1 });
    // Busy for the last 2 s with one answer in them (0.5/s) and one call in flight: about 2 s ahead of any new call.
    admission.admit('gateway', Infinity, Date.now() - 2000);
    admission.admit('gateway', Infinity, Date.now() - 2000);
    admission.done('gateway', true, Date.now() - 1500);
    let handled = 0;
    const server = new GrpcServer({ interceptors: [observingInterceptor([intakeShedding(admission, new Set(['/maas.v1.InferenceService/ModelMetadata']))])] });
    const notUsed = () => Promise.reject(new Error('not part of this test'));
    const impl: InferenceServiceServer = {
      predict: unary('Predict', notUsed),
      modelMetadata: unary('ModelMetadata', async () => {
        handled += 1;
        return { model: 'm', version: 1, inputs: [], outputs: [], runtime: undefined, state: 1, sha256: '' };
      }),
      loadModel: unary('LoadModel', notUsed),
      unloadModel: unary('UnloadModel', notUsed),
      listLoaded: unary('ListLoaded', async () => ({ models: [], memoryBudgetBytes: 0, memoryUsedBytes: 0, nodeId: 'n' })),
    };
    server.addService('maas.v1.InferenceService', InferenceServiceService, impl);
    const port = await server.start();
    const client = new InferenceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      const refused = await new Promise<ServiceError | null>((resolve) => client.modelMetadata({ model: 'm', version: 1, alias: '' }, new Metadata(), { deadline: Date.now() + 500 }, (err) => resolve(err)));
      expect(refused).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('overloaded (gateway)') });
      expect(handled).toBe(0);
      // No deadline: nothing to miss. Another method: not gated.
      await new Promise<void>((resolve, reject) => client.modelMetadata({ model: 'm', version: 1, alias: '' }, (err) => (err ? reject(err) : resolve())));
      expect(handled).toBe(1);
      await new Promise<void>((resolve, reject) => client.listLoaded({}, new Metadata(), { deadline: Date.now() + 500 }, (err) => (err ? reject(err) : resolve())));
    } finally {
      client.close();
      await server.shutdown(1000);
    }
  });

  it('counts a call the client cancels as done', async () => {
    const admission = new Admission();
    let release = () => undefined as void;
    const server = new GrpcServer({ interceptors: [observingInterceptor([intakeShedding(admission, new Set(['/maas.v1.InferenceService/ListLoaded']))])] });
    const notUsed = () => Promise.reject(new Error('not part of this test'));
    server.addService('maas.v1.InferenceService', InferenceServiceService, {
      predict: unary('Predict', notUsed),
      modelMetadata: unary('ModelMetadata', notUsed),
      loadModel: unary('LoadModel', notUsed),
      unloadModel: unary('UnloadModel', notUsed),
      listLoaded: unary('ListLoaded', () => new Promise((resolve) => (release = () => resolve({ models: [], memoryBudgetBytes: 0, memoryUsedBytes: 0, nodeId: 'n' })))),
    } satisfies InferenceServiceServer);
    const port = await server.start();
    const client = new InferenceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      const call = client.listLoaded({}, () => undefined);
      await waitFor(() => admission.inFlightOf('gateway') === 1);
      call.cancel();
      await waitFor(() => admission.inFlightOf('gateway') === 0, { timeoutMs: 2000, description: 'the cancelled call to leave the count' });
    } finally {
      release();
      client.close();
      await server.shutdown(1000);
    }
  });
});
