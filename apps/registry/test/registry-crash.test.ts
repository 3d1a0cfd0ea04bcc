import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { RegistryClient } from '@maas/registry-client';
import { mlpModel, paddedModel, startChild, tempDir, waitFor, type TestChild } from '@maas/testing';

const listening = (line: { json?: Record<string, unknown> }) => line.json?.msg === 'listening';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function start(dataDir: string): Promise<{ child: TestChild; client: RegistryClient }> {
  const child = await startChild({
    entry: 'apps/registry/src/main.ts',
    env: { REGISTRY_PORT: '0', REGISTRY_DATA_DIR: dataDir, REDIS_URL: '', CONSUL_HTTP_ADDR: '' },
    readyWhen: listening,
    name: 'registry',
  });
  return { child, client: new RegistryClient(`127.0.0.1:${child.lines.find(listening)!.json!.port as number}`) };
}

describe('registry killed with SIGKILL in the middle of an upload', () => {
  const dir = tempDir('maas-registry-crash-');
  afterAll(() => dir.remove());

  it('comes back with no partial version, no stray staging file, and every earlier version byte-identical', async () => {
    const first = await start(dir.path);
    const earlier = [mlpModel({ seed: 1 }), mlpModel({ seed: 2 })];
    await first.client.createModel('m');
    for (const bytes of earlier) await first.client.upload({ model: 'm', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] }, [bytes]);
    await first.client.setAlias('m', 'production', 2);

    const big = paddedModel(8 * 1024 * 1024);
    async function* slow() {
      yield big.subarray(0, 1024 * 1024);
      await waitFor(() => readdirSync(join(dir.path, '.staging')).length > 0, { description: 'upload to be staged' });
      first.child.process.kill('SIGKILL');
      await first.child.exited;
      yield big.subarray(1024 * 1024);
    }
    await expect(
      first.client.upload({ model: 'm', description: '', sha256: sha(big), sizeBytes: big.length, runtime: undefined, aliases: ['production'] }, slow()),
    ).rejects.toThrow();
    first.client.close();
    expect(readdirSync(join(dir.path, '.staging')).length).toBeGreaterThan(0); // the crash left debris

    const second = await start(dir.path);
    try {
      expect(readdirSync(join(dir.path, '.staging'))).toEqual([]);
      const model = await second.client.getModel('m');
      expect(model).toMatchObject({ latestVersion: 2, aliases: { production: 2 } });
      expect((await second.client.listVersions('m', { includeArchived: true })).versions.map((v) => v.version)).toEqual([1, 2]);
      for (const [i, bytes] of earlier.entries()) {
        const download = await second.client.download({ model: 'm', version: i + 1 });
        const parts: Buffer[] = [];
        for await (const chunk of download.chunks) parts.push(chunk);
        expect(sha(Buffer.concat(parts))).toBe(sha(bytes));
      }
    } finally {
      second.client.close();
      expect(await second.child.stop('SIGTERM')).toBe(0);
    }
  });
});
