import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isPortOpen, mlpModel, packagesLoadedBy, REPO_ROOT, startChild, tempDir, waitFor, type TestChild } from '@maas/testing';

const exec = promisify(execFile);

/** Runs the `maas` CLI as its own process. */
async function maas(gateway: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [join(REPO_ROOT, 'apps/cli/bin/maas.cjs'), '--gateway', gateway, ...args], { cwd: REPO_ROOT });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('npm start (maas dev) with the CLI against it', () => {
  const dir = tempDir('maas-dev-');
  let stack: TestChild;
  let gateway: string;
  const ports: number[] = [];

  beforeAll(async () => {
    // What `npm start` runs (the compiled CLI, which runs the compiled services), on free ports so it cannot clash with anything here.
    stack = await startChild({
      entry: 'dist/cli/main.js',
      args: ['dev', '--free-ports', '--data-dir', join(dir.path, 'data')],
      env: { CONSUL_HTTP_ADDR: '', REDIS_URL: '', GATEWAY_AUTH: '' },
      readyWhen: (line) => line.text.includes('Ctrl-C stops everything'),
      readyTimeoutMs: 60_000,
      name: 'maas dev',
    });
    gateway = /Gateway: (\S+)/.exec(stack.lines.map((l) => l.text).join('\n'))![1];
    for (const line of stack.lines) {
      const m = /\] listening .*port=(\d+)/.exec(line.text);
      if (m) ports.push(Number(m[1]));
    }
  }, 90_000);

  afterAll(async () => {
    if (stack.process.exitCode === null) await stack.stop('SIGKILL');
    dir.remove();
  });

  it('prints the gateway address and a ready-to-paste predict command for the demo model', () => {
    const text = stack.lines.map((l) => l.text).join('\n');
    expect(text).toContain(`npx maas --gateway ${gateway} predict demo --input 'input=[[1,2,3,4]]'`);
    expect(text).toMatch(/auth OFF/);
    expect(ports).toHaveLength(4);
  });

  it('predicts and prints JSON without loading onnxruntime in the CLI', async () => {
    const loaded = await packagesLoadedBy(join(REPO_ROOT, 'dist/cli/main.js'), ['--gateway', gateway, 'predict', 'demo', '--input', 'input=[[1,2,3,4]]']);
    expect(loaded).toContain('@grpc/grpc-js');
    expect(loaded.filter((name) => /onnx|grpc-health-check|proto-loader/.test(name))).toEqual([]);
  });

  it('runs push, alias set, predict and nodes as separate processes', async () => {
    const demo = await maas(gateway, 'predict', 'demo', '--input', 'input=[[1,2,3,4]]');
    expect(demo.code).toBe(0);
    expect(JSON.parse(demo.stdout)).toMatchObject({ model: 'demo', version: 1, outputs: { output: { dtype: 'float32', shape: [1, 3] } } });

    const file = join(dir.path, 'mine.onnx');
    writeFileSync(file, mlpModel({ seed: 77 }));
    const push = await maas(gateway, 'push', 'mine', file);
    expect(push).toMatchObject({ code: 0, stdout: expect.stringMatching(/^pushed mine:1 {2}sha256=[0-9a-f]{64}/) });
    expect(await maas(gateway, 'alias', 'set', 'mine', 'production', '1')).toMatchObject({ code: 0 });
    const answer = await maas(gateway, 'predict', 'mine@production', '--input', 'input=[[0.5,0.5,0.5,0.5],[1,1,1,1]]');
    expect(JSON.parse(answer.stdout).outputs.output.shape).toEqual([2, 3]);

    const nodes = await maas(gateway, '--json', 'nodes');
    const list = JSON.parse(nodes.stdout) as Array<{ loaded: Array<{ model: string }> }>;
    expect(list).toHaveLength(2);
    expect(list.flatMap((n) => n.loaded.map((m) => m.model)).sort()).toEqual(['demo', 'mine']);

    const missing = await maas(gateway, 'predict', 'ghost', '--input', 'input=[[1,2,3,4]]');
    expect(missing.code).not.toBe(0);
    expect(missing.stderr.trim()).toBe('error: NOT_FOUND: model "ghost" does not exist');
    const bad = await maas(gateway, 'predict', 'demo', '--input', 'input=[[1,2,3]]');
    expect(bad.stderr.trim()).toMatch(/^error: INVALID_ARGUMENT: input "input": dimension 1 must be 4/);
  });

  it('answers health, models list/show, archive and keys create', async () => {
    expect((await maas(gateway, 'health')).stdout).toContain('SERVING');
    expect((await maas(gateway, 'models', 'list')).stdout).toMatch(/^demo {2}latest=1 {2}aliases=production→1/m);
    const file = join(dir.path, 'two.onnx');
    writeFileSync(file, mlpModel({ seed: 78 }));
    expect((await maas(gateway, 'push', 'mine', file)).code).toBe(0);
    expect(await maas(gateway, 'archive', 'mine', '2')).toMatchObject({ code: 0, stdout: 'archived mine:2\n' });
    expect((await maas(gateway, 'models', 'show', 'mine')).stdout).toMatch(/v2 {2}ARCHIVED/);
    const keys = await maas(gateway, 'keys', 'create', '--id', 'ops', '--scope', 'admin');
    expect(keys.stdout).toMatch(/^maas_[\w-]{43}$/m);
    expect(keys.stdout).toMatch(/"id":"ops","sha256":"[0-9a-f]{64}","scopes":\["admin"\]/);
  });

  it('stops every process with exit 0 on Ctrl-C and leaves no port open', async () => {
    stack.process.kill('SIGINT');
    expect(await stack.exited).toBe(0);
    expect(stack.lines.some((l) => l.text === 'stopped cleanly')).toBe(true);
    for (const port of ports) await waitFor(async () => !(await isPortOpen(port)), { description: `port ${port} to close` });
  });
});
