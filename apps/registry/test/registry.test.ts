import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { VersionState } from '@maas/proto';
import { mlpModel, paddedModel, startRedis, waitFor, type TestRedis } from '@maas/testing';
import { startRegistryFixture, type RegistryFixture } from './registry-fixture';

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

function* inPieces(bytes: Buffer, size: number): Generator<Buffer> {
  for (let offset = 0; offset < bytes.length; offset += size) yield bytes.subarray(offset, offset + size);
}

async function codeOf(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    return { code: (err as ServiceError).code, details: (err as ServiceError).details };
  }
  throw new Error('expected the call to fail');
}

const upload = (f: RegistryFixture, model: string, bytes: Buffer, extra: { aliases?: string[]; sha256?: string } = {}) =>
  f.client.upload(
    { model, description: '', sha256: extra.sha256 ?? '', sizeBytes: 0, runtime: undefined, aliases: extra.aliases ?? [] },
    inPieces(bytes, 64 * 1024),
  );

describe('registry over gRPC with a real Redis', () => {
  let redis: TestRedis;
  let f: RegistryFixture;

  beforeEach(async () => {
    redis = await startRedis();
    f = await startRegistryFixture({ redisUrl: redis.url, metricsPort: 0 });
  });
  afterEach(async () => {
    await f.stop();
    await redis.stop();
  });

  it('create → multi-chunk upload → get → alias → resolve → download returns the same bytes', async () => {
    const bytes = paddedModel(512 * 1024, { seed: 7 });
    await f.client.createModel('mlp', 'a tiny MLP', ['demo']);
    const v1 = await upload(f, 'mlp', bytes, { sha256: sha256(bytes) });
    expect(v1).toMatchObject({ model: 'mlp', version: 1, sha256: sha256(bytes), sizeBytes: bytes.length, state: VersionState.VERSION_STATE_READY });
    expect(v1.inputs).toEqual([expect.objectContaining({ name: 'input', shape: [-1, 4] })]);
    expect(v1.runtime).toMatchObject({ maxBatchSize: 32 });

    expect(await f.client.getVersion('mlp', 1)).toMatchObject({ sha256: sha256(bytes) });
    await f.client.setAlias('mlp', 'production', 1);
    expect((await f.client.getModel('mlp')).aliases).toEqual({ production: 1 });
    expect((await f.client.resolve('mlp')).version).toBe(1);
    expect((await f.client.resolve('mlp@production')).version).toBe(1);
    expect((await f.client.resolve('mlp:1')).version).toBe(1);

    const download = await f.client.download({ model: 'mlp', version: 1 }, { chunkSize: 16 * 1024 });
    expect(download.version.sha256).toBe(sha256(bytes));
    expect((await collect(download.chunks)).equals(bytes)).toBe(true);
    const bySha = await f.client.download({ sha256: sha256(bytes) });
    expect((await collect(bySha.chunks)).equals(bytes)).toBe(true);
  });

  it('resolves a bare name to the latest READY version when no production alias exists', async () => {
    await f.client.createModel('m');
    await upload(f, 'm', mlpModel({ seed: 1 }));
    await upload(f, 'm', mlpModel({ seed: 2 }));
    expect((await f.client.resolve('m')).version).toBe(2);
    await f.client.archiveVersion('m', 2);
    expect((await f.client.resolve('m')).version).toBe(1);
    expect(await codeOf(f.client.resolve('m:2'))).toMatchObject({ code: status.FAILED_PRECONDITION, details: expect.stringContaining('archived') });
    expect(await codeOf(f.client.setAlias('m', 'staging', 2))).toMatchObject({ code: status.FAILED_PRECONDITION });
    expect(await codeOf(f.client.setAlias('m', 'staging', 9))).toMatchObject({ code: status.FAILED_PRECONDITION });
    expect(await codeOf(f.client.resolve('m@nope'))).toMatchObject({ code: status.NOT_FOUND, details: expect.stringContaining('no alias "nope"') });
  });

  it('sees an alias change from a second client at once (cache invalidated)', async () => {
    await f.client.createModel('m');
    await upload(f, 'm', mlpModel({ seed: 1 }), { aliases: ['production'] });
    await upload(f, 'm', mlpModel({ seed: 2 }));
    const other = f.newClient();
    expect((await other.resolve('m')).version).toBe(1);
    expect((await other.resolve('m')).version).toBe(1); // now served from the cache
    expect(f.app.cache.stats.hits).toBeGreaterThan(0);
    await f.client.setAlias('m', 'production', 2);
    expect((await other.resolve('m')).version).toBe(2);
    const metrics = await (await fetch(`http://127.0.0.1:${f.app.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^maas_cache_hits_total\{service="registry"\} [1-9]/m);
    expect(metrics).toMatch(/^maas_registry_upload_bytes_total\{service="registry"\} [1-9]/m);
    expect(metrics).toMatch(/^maas_rpc_requests_total\{method="Resolve",model="m",version="",code="OK",service="registry"\} 3/m);
  });

  it('keeps answering reads when Redis is killed mid-test', async () => {
    await f.client.createModel('m');
    await upload(f, 'm', mlpModel(), { aliases: ['production'] });
    expect((await f.client.resolve('m')).version).toBe(1);
    await redis.kill();
    for (let i = 0; i < 5; i++) expect((await f.client.resolve('m')).version).toBe(1);
    expect((await f.client.getModel('m')).name).toBe('m');
    await f.client.setAlias('m', 'staging', 1); // writes still succeed
    expect((await f.client.resolve('m@staging')).version).toBe(1);
  });

  it('rejects a corrupt ONNX file and a checksum mismatch, leaving no version behind', async () => {
    await f.client.createModel('m');
    const corrupt = Buffer.from('definitely not an onnx model'.repeat(100));
    expect(await codeOf(upload(f, 'm', corrupt))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('ONNX') });
    const bytes = mlpModel();
    expect(await codeOf(upload(f, 'm', bytes, { sha256: 'a'.repeat(64) }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('sha256 mismatch'),
    });
    expect((await f.client.listVersions('m', { includeArchived: true })).versions).toEqual([]);
    expect(readdirSync(join(f.dataDir, '.staging'))).toEqual([]);
  });
});

describe('registry upload limits and cancellation', () => {
  let f: RegistryFixture;
  beforeEach(async () => (f = await startRegistryFixture({ maxUploadBytes: 256 * 1024 })));
  afterEach(() => f.stop());

  it('answers RESOURCE_EXHAUSTED past the size limit and stores nothing', async () => {
    await f.client.createModel('m');
    const result = await codeOf(upload(f, 'm', paddedModel(300 * 1024)));
    expect(result).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('262144 bytes') });
    expect((await f.client.getModel('m')).latestVersion).toBe(0);
    await waitFor(() => readdirSync(join(f.dataDir, '.staging')).length === 0);
  });

  it('leaves no version, file or alias change when the client cancels mid-upload', async () => {
    await f.client.createModel('m');
    await upload(f, 'm', mlpModel({ seed: 1 }), { aliases: ['production'] });
    const controller = new AbortController();
    const bytes = paddedModel(200 * 1024);
    async function* slowChunks() {
      yield bytes.subarray(0, 64 * 1024);
      // Cancel once the server has staged the first bytes.
      await waitFor(() => readdirSync(join(f.dataDir, '.staging')).length > 0);
      controller.abort();
      yield bytes.subarray(64 * 1024);
    }
    const result = await codeOf(
      f.client.upload({ model: 'm', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: ['production'] }, slowChunks(), {
        signal: controller.signal,
      }),
    );
    expect(result.code).toBe(status.CANCELLED);
    await waitFor(() => readdirSync(join(f.dataDir, '.staging')).length === 0, { description: 'staging to be emptied' });
    const model = await f.client.getModel('m');
    expect(model).toMatchObject({ latestVersion: 1, aliases: { production: 1 } });
    expect(readdirSync(join(f.dataDir, 'm')).sort()).toEqual(['1', 'model.json']);
  });
});
