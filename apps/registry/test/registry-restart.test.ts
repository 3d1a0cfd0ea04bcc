import { createHash } from 'node:crypto';
import { RegistryClient } from '@maas/registry-client';
import { mlpModel, startChild, tempDir, type TestChild } from '@maas/testing';

const listening = (line: { json?: Record<string, unknown> }) => line.json?.msg === 'listening';

async function startRegistryProcess(dataDir: string): Promise<{ child: TestChild; client: RegistryClient }> {
  const child = await startChild({
    entry: 'apps/registry/src/main.ts',
    env: { REGISTRY_PORT: '0', REGISTRY_DATA_DIR: dataDir, REDIS_URL: '', CONSUL_HTTP_ADDR: '' },
    readyWhen: listening,
    name: 'registry',
  });
  const port = child.lines.find(listening)!.json!.port as number;
  return { child, client: new RegistryClient(`127.0.0.1:${port}`) };
}

describe('registry process restart', () => {
  const dir = tempDir('maas-registry-restart-');
  afterAll(() => dir.remove());

  it('serves every model, version, alias and artifact byte again after SIGTERM and a new start', async () => {
    const first = await startRegistryProcess(dir.path);
    const artifacts = [mlpModel({ seed: 1 }), mlpModel({ seed: 2 })];
    await first.client.createModel('mlp', 'kept across restarts', ['demo']);
    for (const bytes of artifacts) {
      await first.client.upload({ model: 'mlp', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: [] }, [bytes]);
    }
    await first.client.setAlias('mlp', 'production', 1);
    first.client.close();
    expect(await first.child.stop('SIGTERM')).toBe(0);

    const second = await startRegistryProcess(dir.path);
    try {
      const model = await second.client.getModel('mlp');
      expect(model).toMatchObject({ description: 'kept across restarts', tags: ['demo'], aliases: { production: 1 }, latestVersion: 2 });
      expect((await second.client.resolve('mlp')).version).toBe(1);
      for (const [i, bytes] of artifacts.entries()) {
        const download = await second.client.download({ model: 'mlp', version: i + 1 });
        const parts: Buffer[] = [];
        for await (const chunk of download.chunks) parts.push(chunk);
        expect(createHash('sha256').update(Buffer.concat(parts)).digest('hex')).toBe(createHash('sha256').update(bytes).digest('hex'));
      }
    } finally {
      second.client.close();
      expect(await second.child.stop('SIGTERM')).toBe(0);
    }
  });
});
