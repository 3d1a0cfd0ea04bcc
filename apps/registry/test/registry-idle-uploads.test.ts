import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { ModelVersion, UploadVersionRequest } from '@maas/proto';
import { mlpModel, waitFor } from '@maas/testing';
import { startRegistryFixture, type RegistryFixture } from './registry-fixture';

const meta = (model: string): UploadVersionRequest => ({
  payload: { $case: 'metadata', value: { model, description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] } },
});

/** An upload stream that sends its metadata and then nothing; resolves with how it ended. */
function idleUpload(f: RegistryFixture, model: string): { ended: Promise<ServiceError | ModelVersion> } {
  const ended = new Promise<ServiceError | ModelVersion>((resolve) => {
    const call = f.client.raw.uploadVersion(new Metadata(), (err, res) => resolve(err ?? res));
    call.write(meta(model));
  });
  return { ended };
}

describe('registry upload streams that go idle', () => {
  let f: RegistryFixture;
  const staging = () => readdirSync(join(f.dataDir, '.staging'));

  beforeAll(async () => {
    f = await startRegistryFixture({ uploadIdleMs: 400, maxConcurrentUploads: 3 });
    await f.client.createModel('m');
  });
  afterAll(() => f.stop());

  it('caps concurrent uploads, cuts idle ones with DEADLINE_EXCEEDED and removes their staging at once', async () => {
    const started = Date.now();
    const streams = Array.from({ length: 5 }, () => idleUpload(f, 'm'));
    const tookMs: number[] = [];
    await waitFor(() => staging().length === 3, { timeoutMs: 2000, description: 'three uploads staged' });
    const ends = (await Promise.all(streams.map((s) => s.ended.finally(() => tookMs.push(Date.now() - started))))) as ServiceError[];
    // Two were refused at once (well before the idle timeout); three were cut after it.
    tookMs.sort((a, b) => a - b);
    expect(tookMs[1]).toBeLessThan(400);
    expect(tookMs[2]).toBeGreaterThanOrEqual(400);
    const codes = ends.map((e) => e.code).sort();
    expect(codes).toEqual([status.DEADLINE_EXCEEDED, status.DEADLINE_EXCEEDED, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED, status.RESOURCE_EXHAUSTED].sort());
    expect(ends.find((e) => e.code === status.DEADLINE_EXCEEDED)!.details).toMatch(/upload sent nothing for 400 ms \(REGISTRY_UPLOAD_IDLE_MS\)/);
    expect(ends.find((e) => e.code === status.RESOURCE_EXHAUSTED)!.details).toMatch(/taking 3 uploads already \(REGISTRY_MAX_CONCURRENT_UPLOADS\)/);
    await waitFor(() => staging().length === 0, { timeoutMs: 1000, description: 'staging to be emptied' });
    // The slots are free again, and an upload that keeps sending is never cut.
    const version = await f.client.upload({ model: 'm', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] }, [mlpModel()]);
    expect(version.version).toBe(1);
  });
});
