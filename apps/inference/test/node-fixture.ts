import { credentials } from '@grpc/grpc-js';
import { DataType, InferenceServiceClient, type PredictResponse, type RuntimeConfig, type Tensor } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { callUnary, defaultClientOptions, type CallOpts } from '@maas/rpc';
import { tempDir } from '@maas/testing';
import type { Registrar } from '@maas/discovery';
import { loadRegistryConfig } from '../../registry/src/config';
import { startRegistry, type RegistryApp } from '../../registry/src/registry-app';
import { loadInferenceConfig, type InferenceConfig } from '../src/config';
import { startInferenceNode, type InferenceNode } from '../src/inference-app';

/** A real registry and one inference node in this process, on free ports. */
export interface NodeFixture {
  registryApp: RegistryApp;
  registry: RegistryClient;
  node: InferenceNode;
  client: InstanceType<typeof InferenceServiceClient>;
  /** Creates the model if needed and uploads a version; returns its number. */
  push(model: string, bytes: Buffer, runtime?: Partial<RuntimeConfig>, aliases?: string[]): Promise<number>;
  predict(model: string, version: number, inputs: Tensor[], opts?: CallOpts): Promise<PredictResponse>;
  stop(): Promise<void>;
}

export function floatTensor(name: string, shape: number[], values: ArrayLike<number>): Tensor {
  const data = Float32Array.from(values);
  return { name, dtype: DataType.DATA_TYPE_FLOAT32, shape, rawData: Buffer.from(data.buffer), stringData: [] };
}

export function floatsOf(tensor: Tensor): number[] {
  const raw = Buffer.from(tensor.rawData);
  return Array.from({ length: raw.length / 4 }, (_, i) => raw.readFloatLE(i * 4));
}

export async function startNodeFixture(overrides: Partial<InferenceConfig> = {}, registrar?: Registrar): Promise<NodeFixture> {
  const registryDir = tempDir('maas-registry-');
  const cacheDir = tempDir('maas-node-');
  const registryApp = await startRegistry(loadRegistryConfig({}, { port: 0, dataDir: registryDir.path }));
  const node = await startInferenceNode(
    loadInferenceConfig({}, { port: 0, registryAddress: registryApp.address, cacheDir: cacheDir.path, ...overrides }),
    { registrar },
  );
  const registry = new RegistryClient(registryApp.address);
  const client = new InferenceServiceClient(node.address, credentials.createInsecure(), defaultClientOptions());
  const created = new Set<string>();
  return {
    registryApp,
    registry,
    node,
    client,
    async push(model, bytes, runtime = {}, aliases = []) {
      if (!created.has(model)) {
        await registry.createModel(model).catch(() => undefined);
        created.add(model);
      }
      const full: RuntimeConfig = { maxBatchSize: 0, maxQueueDelayMicros: 0, instanceCount: 0, maxQueueSize: 0, ...runtime };
      const version = await registry.upload({ model, description: '', sha256: '', sizeBytes: 0, runtime: full, aliases }, [bytes]);
      return version.version;
    },
    predict(model, version, inputs, opts = {}) {
      return callUnary(client.predict.bind(client), { model, version, alias: '', inputs, outputNames: [], sha256: '' }, opts);
    },
    async stop() {
      client.close();
      registry.close();
      await node.shutdown(1000);
      await registryApp.shutdown(1000);
      registryDir.remove();
      cacheDir.remove();
    },
  };
}
