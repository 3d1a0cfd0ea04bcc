import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { ModelVersion, UploadVersionRequest } from '@maas/proto';
import { mlpModel } from '@maas/testing';
import { startRegistryFixture, type RegistryFixture } from './registry-fixture';

async function failure(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (err) {
    return { code: (err as ServiceError).code, details: (err as ServiceError).details };
  }
  throw new Error('expected the call to fail');
}

/** Sends raw upload messages in the given order. */
function rawUpload(f: RegistryFixture, messages: UploadVersionRequest[]): Promise<ModelVersion> {
  return new Promise((resolve, reject) => {
    const call = f.client.raw.uploadVersion(new Metadata(), (err, res) => (err ? reject(err) : resolve(res)));
    for (const message of messages) call.write(message);
    call.end();
  });
}

const meta = (model = 'm'): UploadVersionRequest => ({
  payload: { $case: 'metadata', value: { model, description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] } },
});
const chunk = (bytes: Buffer): UploadVersionRequest => ({ payload: { $case: 'chunk', value: bytes } });

describe('registry input validation', () => {
  let f: RegistryFixture;
  beforeAll(async () => {
    f = await startRegistryFixture();
    await f.client.createModel('m');
  });
  afterAll(() => f.stop());

  it.each(['../etc', '/abs', 'UPPER', '', 'a'.repeat(64), 'mo del', 'ｍodel', '..', 'a/b'])('rejects model name %j', async (name) => {
    const result = await failure(f.client.createModel(name));
    expect(result.code).toBe(status.INVALID_ARGUMENT);
    expect(result.details).toMatch(/expected 1-63 characters/);
  });

  it('answers ALREADY_EXISTS and NOT_FOUND with the name', async () => {
    expect(await failure(f.client.createModel('m'))).toMatchObject({ code: status.ALREADY_EXISTS, details: 'model "m" already exists' });
    expect(await failure(f.client.getModel('ghost'))).toMatchObject({ code: status.NOT_FOUND, details: 'model "ghost" does not exist' });
    expect(await failure(f.client.getVersion('m', 4))).toMatchObject({ code: status.NOT_FOUND });
  });

  it('rejects bad tags, aliases and page tokens', async () => {
    expect((await failure(f.client.createModel('t', '', ['bad tag']))).code).toBe(status.INVALID_ARGUMENT);
    expect((await failure(f.client.setAlias('m', '123', 1))).details).toMatch(/not only digits/);
    expect((await failure(f.client.listModels({ pageToken: 'garbage' }))).details).toMatch(/page_token is not one this server issued/);
    // Above the proto's maximum is served as the maximum (coerced), not refused.
    expect((await f.client.listModels({ pageSize: 100_000 })).models.length).toBeGreaterThan(0);
  });

  it('pages through models with tokens bound to their filter', async () => {
    for (const name of ['p1', 'p2', 'p3']) await f.client.createModel(name, '', ['paged']);
    const first = await f.client.listModels({ pageSize: 2, tag: 'paged' });
    expect(first.models.map((m) => m.name)).toEqual(['p1', 'p2']);
    const second = await f.client.listModels({ pageSize: 2, tag: 'paged', pageToken: first.nextPageToken });
    expect(second).toMatchObject({ models: [expect.objectContaining({ name: 'p3' })], nextPageToken: '' });
    expect((await failure(f.client.listModels({ pageSize: 2, pageToken: first.nextPageToken }))).details).toMatch(/different listing/);
  });

  it.each([
    ['a chunk first', [chunk(Buffer.from([1])), meta()], /must start with a metadata message/],
    ['metadata twice', [meta(), meta()], /metadata twice/],
    ['zero chunks', [meta()], /no artifact bytes/],
    ['an empty stream', [], /stream was empty/],
    ['an unknown model', [meta('ghost'), chunk(mlpModel())], /model "ghost" does not exist/],
  ])('rejects an upload with %s', async (_label, messages, message) => {
    const result = await failure(rawUpload(f, messages as UploadVersionRequest[]));
    expect(result.code).toBe(/ghost/.test(String(message)) ? status.NOT_FOUND : status.INVALID_ARGUMENT);
    expect(result.details).toMatch(message);
  });

  it('rejects out-of-range runtime config and download chunk sizes', async () => {
    const bad: UploadVersionRequest = {
      payload: {
        $case: 'metadata',
        value: { model: 'm', description: '', sha256: '', sizeBytes: 0, runtime: { maxBatchSize: 10_000, maxQueueDelayMicros: 0, instanceCount: 0, maxQueueSize: 0 }, aliases: [] },
      },
    };
    expect((await failure(rawUpload(f, [bad, chunk(mlpModel())]))).details).toMatch(/max_batch_size 10000 is too large/);
    await f.client.upload({ model: 'm', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] }, [mlpModel()]);
    // chunk_size is a preference: clamped into 1 KiB..4 MiB, as the proto says.
    const small = await f.client.download({ model: 'm', version: 1 }, { chunkSize: 10 });
    const sizes: number[] = [];
    for await (const c of small.chunks) sizes.push(c.length);
    expect(sizes.slice(0, -1).every((n) => n === 1024)).toBe(true);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(mlpModel().length);
  });
});
