import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { mlpModel, paddedModel, REPO_ROOT, tempDir } from '@maas/testing';
import { startRegistryFixture, type RegistryFixture } from './registry-fixture';

const exec = promisify(execFile);

/** Mounts a 20 MiB tmpfs for the registry's data; null where this machine does not allow it. */
function mountSmallDisk(path: string): boolean {
  mkdirSync(path, { recursive: true });
  return spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', path]).status === 0;
}

const dir = tempDir('maas-disk-full-');
const disk = join(dir.path, 'disk');
const mounted = mountSmallDisk(disk);
if (!mounted) {
  console.warn(`\n${'!'.repeat(80)}\nFULL-DISK TESTS NOT RUN: mounting a tmpfs needs root (mount -t tmpfs); run the tests as root to include them\n${'!'.repeat(80)}\n`);
}
const describeIf = mounted ? describe : describe.skip;

describeIf('registry data on a 20 MiB disk', () => {
  let f: RegistryFixture;
  const big = join(dir.path, 'big.onnx');

  beforeAll(async () => {
    writeFileSync(big, paddedModel(30 * 1024 * 1024));
    f = await startRegistryFixture({ dataDir: join(disk, 'data') });
  });

  afterAll(async () => {
    await f?.stop();
    spawnSync('umount', [disk]);
    rmSync(dir.path, { recursive: true, force: true });
  });

  const staged = () => readdirSync(join(disk, 'data', '.staging'));

  it('refuses an upload whose declared size cannot fit before streaming it', async () => {
    await f.client.createModel('big');
    const bytes = paddedModel(30 * 1024 * 1024);
    const started = Date.now();
    const err = await f.client.upload({ model: 'big', description: '', sha256: '', sizeBytes: bytes.length, runtime: undefined, aliases: [] }, [bytes]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringMatching(/registry storage is full: the upload declares \d+ bytes and \d+ bytes are free/) });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(staged()).toEqual([]);
  });

  it('answers RESOURCE_EXHAUSTED, not INTERNAL, when the disk fills mid-stream, and keeps nothing', async () => {
    const err = await f.client.upload({ model: 'big', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] }, [paddedModel(30 * 1024 * 1024)]).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: status.RESOURCE_EXHAUSTED, details: expect.stringContaining('registry storage is full') });
    expect(staged()).toEqual([]);
    expect((await f.client.listVersions('big')).versions).toEqual([]);
    // The space is free again: a model that fits is stored whole.
    const ok = await f.client.upload({ model: 'big', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] }, [mlpModel()]);
    expect(ok.version).toBe(1);
  });

  it('leaves no model behind when the CLI created it for a push that failed', async () => {
    const run = await exec(process.execPath, [join(REPO_ROOT, 'apps/cli/bin/maas.cjs'), '--gateway', f.app.address, 'push', 'fresh', big], { cwd: REPO_ROOT }).catch((e: { code: number; stderr: string }) => e);
    expect(run).toMatchObject({ code: 1, stderr: expect.stringContaining('RESOURCE_EXHAUSTED: registry storage is full') });
    await expect(f.client.getModel('fresh')).rejects.toMatchObject({ code: status.NOT_FOUND });
  });
});
