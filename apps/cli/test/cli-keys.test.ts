import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateApiKey, hashApiKey } from '@maas/auth';
import { mlpModel, REPO_ROOT, startService, tempDir, type TestChild } from '@maas/testing';

const exec = promisify(execFile);

/**
 * Every `maas` command against a gateway with API keys on, the way the compose
 * stack runs: the key from `--api-key` and from MAAS_API_KEY. Each command is
 * its own process, as a user runs it.
 */
describe('the CLI against a gateway with API keys on', () => {
  const dir = tempDir('maas-cli-keys-');
  const children: TestChild[] = [];
  const keys = { admin: generateApiKey(), predict: generateApiKey() };
  let gateway = '';

  const maas = async (args: string[], env: Record<string, string> = {}) => {
    try {
      const { stdout } = await exec(process.execPath, [join(REPO_ROOT, 'apps/cli/bin/maas.cjs'), '--gateway', gateway, ...args], { cwd: REPO_ROOT, env: { ...process.env, MAAS_API_KEY: '', ...env } });
      return { code: 0, out: stdout };
    } catch (err) {
      const e = err as { code: number; stdout: string; stderr: string };
      return { code: e.code, out: `${e.stdout}${e.stderr}` };
    }
  };
  const admin = (...args: string[]) => maas(['--api-key', keys.admin, ...args]);

  beforeAll(async () => {
    const start = async (name: string, entry: string, env: Record<string, string>) => {
      const service = await startService(name, entry, env);
      children.push(service.child);
      return service.port;
    };
    const registry = await start('registry', 'apps/registry/src/main.ts', { REGISTRY_PORT: '0', REGISTRY_DATA_DIR: join(dir.path, 'registry'), REDIS_URL: '', CONSUL_HTTP_ADDR: '' });
    const node = await start('node', 'apps/inference/src/main.ts', {
      INFERENCE_PORT: '0',
      INFERENCE_CACHE_DIR: join(dir.path, 'node'),
      REGISTRY_ADDRESS: `127.0.0.1:${registry}`,
      REDIS_URL: '',
      CONSUL_HTTP_ADDR: '',
    });
    const port = await start('gateway', 'apps/gateway/src/main.ts', {
      GATEWAY_PORT: '0',
      GATEWAY_HTTP_PORT: '0',
      GATEWAY_AUTH: 'on',
      REGISTRY_ADDRESS: `127.0.0.1:${registry}`,
      INFERENCE_NODES: `127.0.0.1:${node}`,
      REDIS_URL: '',
      CONSUL_HTTP_ADDR: '',
      GATEWAY_API_KEYS: JSON.stringify([
        { id: 'ops', sha256: hashApiKey(keys.admin), scopes: ['admin'] },
        { id: 'app', sha256: hashApiKey(keys.predict), scopes: ['predict'] },
      ]),
    });
    gateway = `127.0.0.1:${port}`;
  }, 90_000);

  afterAll(async () => {
    await Promise.all(children.map((c) => c.stop('SIGTERM')));
    dir.remove();
  });

  it('runs every command with the key, and refuses without it', async () => {
    const file = join(dir.path, 'mlp.onnx');
    writeFileSync(file, mlpModel({ seed: 4 }));
    // Each step must exit 0; a failure shows which step and what the CLI printed.
    const run = async (label: string, result: Promise<{ code: number; out: string }>) => {
      const r = await result;
      expect({ label, code: r.code, out: r.code === 0 ? '' : r.out }).toEqual({ label, code: 0, out: '' });
      return r.out;
    };
    await run('models create', admin('models', 'create', 'clik', '-d', 'by the cli', '-t', 'demo'));
    expect(await run('push', admin('push', 'clik', file, '--alias', 'staging'))).toMatch(/[0-9a-f]{64}/);
    await run('push (implicit create)', admin('push', 'clik2', file));
    await run('alias set', admin('alias', 'set', 'clik', 'production', '1'));
    expect(await run('models list', admin('--json', 'models', 'list'))).toContain('clik');
    expect(await run('models show (predict key from MAAS_API_KEY)', maas(['models', 'show', 'clik'], { MAAS_API_KEY: keys.predict }))).toContain('production');
    const predicted = JSON.parse(await run('predict', maas(['predict', 'clik', '--input', 'input=[[1,2,3,4]]'], { MAAS_API_KEY: keys.predict }))) as { version: number };
    expect(predicted.version).toBe(1);
    await run('predict @alias', maas(['--api-key', keys.predict, 'predict', 'clik@staging', '--input', 'input=[[1,2,3,4]]']));
    expect(await run('nodes', maas(['--api-key', keys.predict, 'nodes']))).toContain('clik');
    await run('health', admin('health'));
    await run('alias rm', admin('alias', 'rm', 'clik', 'staging'));
    await run('push v2', admin('push', 'clik', file));
    await run('archive', admin('archive', 'clik', '2'));
    await run('keys create', maas(['keys', 'create', '--id', 'x', '--scope', 'predict']));
    await run('models delete', admin('models', 'delete', 'clik'));

    // Without a key, or with too small a scope, the gateway says so and the CLI exits non-zero.
    const bare = await maas(['models', 'list']);
    expect(bare.code).not.toBe(0);
    expect(bare.out).toMatch(/UNAUTHENTICATED/);
    const weak = await maas(['--api-key', keys.predict, 'models', 'create', 'nope']);
    expect(weak.out).toMatch(/PERMISSION_DENIED/);
  }, 120_000);
});
