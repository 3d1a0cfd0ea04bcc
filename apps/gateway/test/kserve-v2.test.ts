import { credentials, loadPackageDefinition, type GrpcObject, type ServiceClientConstructor, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoRoot } from '@maas/proto';
import { mlpModel } from '@maas/testing';
import { startStack, withKey, type Stack } from './stack-fixture';

/** A client built only from the protocol's .proto, as an existing KServe/Triton client would be. */
function v2Client(address: string) {
  const definition = loadSync('inference/grpc_predict_v2.proto', { includeDirs: [protoRoot], keepCase: true, longs: Number, defaults: true });
  const pkg = loadPackageDefinition(definition).inference as GrpcObject;
  const Client = pkg.GRPCInferenceService as ServiceClientConstructor;
  const client = new Client(address, credentials.createInsecure());
  const call = <T>(method: string, request: object, key: string) =>
    new Promise<T>((resolve, reject) => {
      (client as unknown as Record<string, (r: object, m: unknown, cb: (e: ServiceError | null, r: T) => void) => void>)[method](request, withKey(key), (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  return { client, call };
}

describe('Open Inference Protocol (KServe V2) on the gateway', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
    await stack.push('kv2', mlpModel({ seed: 9 }), {}, ['production']);
  }, 60_000);
  afterAll(() => stack?.stop());

  it('answers health, metadata and ModelInfer with typed and raw contents', async () => {
    const { client, call } = v2Client(stack.gateway.address);
    const key = stack.keys.predict;
    try {
      expect(await call('ServerLive', {}, key)).toEqual({ live: true });
      expect(await call('ServerReady', {}, key)).toEqual({ ready: true });
      expect(await call('ModelReady', { name: 'kv2', version: '' }, key)).toEqual({ ready: true });
      expect(await call('ModelReady', { name: 'ghost', version: '' }, key)).toEqual({ ready: false });
      const metadata = await call<{ inputs: Array<{ name: string; datatype: string; shape: number[] }> }>('ModelMetadata', { name: 'kv2', version: '' }, key);
      expect(metadata.inputs).toEqual([{ name: 'input', datatype: 'FP32', shape: [-1, 4] }]);

      type Answer = { model_version: string; outputs: Array<{ name: string; datatype: string; shape: number[]; contents: { fp32_contents: number[] } | null }>; raw_output_contents: Buffer[] };
      const typed = await call<Answer>(
        'ModelInfer',
        { model_name: 'kv2', id: 'r1', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }] },
        key,
      );
      expect(typed.model_version).toBe('1');
      expect(typed.outputs[0]).toMatchObject({ name: 'output', datatype: 'FP32', shape: [1, 3] });
      // Answers are raw however the inputs came, as Triton's are.
      expect(typed.outputs[0].contents).toBeNull();
      const typedValues = Array.from(new Float32Array(new Uint8Array(typed.raw_output_contents[0]).buffer));
      expect(typedValues).toHaveLength(3);

      const raw = await call<Answer>(
        'ModelInfer',
        { model_name: 'kv2', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 4] }], raw_input_contents: [Buffer.from(Float32Array.from([1, 2, 3, 4]).buffer)] },
        key,
      );
      const rawValues = Array.from(new Float32Array(new Uint8Array(raw.raw_output_contents[0]).buffer));
      expect(rawValues).toEqual(typedValues);

      const bad = await call('ModelInfer', { model_name: 'kv2', inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 5], contents: { fp32_contents: [1, 2, 3, 4, 5] } }] }, key).catch(
        (err: ServiceError) => err,
      );
      expect((bad as ServiceError).code).toBe(3);
      expect((bad as ServiceError).details).toMatch(/expected float32\[-1,4\]/);
    } finally {
      client.close();
    }
  });
});
