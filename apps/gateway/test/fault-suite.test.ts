import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { setTimeout as hold } from 'node:timers/promises';
import { RegistryClient } from '@maas/registry-client';
import { mlpModel, REPO_ROOT, startService, tempDir, waitFor, type TestService } from '@maas/testing';

/** What the independent load generator (faults/load-generator.ts) reports. */
interface LoadResult {
  ok: number;
  errors: Record<string, number>;
  maxGapMs: number;
  p50Ms: number;
  p99Ms: number;
  seconds: number;
}

/** Runs the load generator as its own process. */
async function runLoad(job: { target: string; model: string; input: { name: string; shape: number[] }; concurrency: number; durationMs: number; deadlineMs: number }): Promise<LoadResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'faults/load-generator.ts'), JSON.stringify(job)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (out += text));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`load generator exited with ${code}`);
  return JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
}

/** Predicts of `model` a node has answered, from its /metrics. */
async function predictsOn(node: TestService, model: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('maas_rpc_requests_total{') && line.includes('method="Predict"') && line.includes(`model="${model}"`)) total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/**
 * Faults as users meet them, driven by an independent load generator
 * process (its own grpc-js client built from proto/ by proto-loader, a 5 s
 * deadline per call) against real processes: a registry, three nodes and a
 * gateway.
 */
describe('faults under load', () => {
  const dir = tempDir('maas-faults-');
  const services: TestService[] = [];
  let nodes: TestService[];
  let gateway: TestService;
  let registry: RegistryClient;

  beforeAll(async () => {
    const reg = await startService('registry', 'apps/registry/src/main.ts', { REGISTRY_PORT: '0', REGISTRY_DATA_DIR: join(dir.path, 'registry'), REDIS_URL: '', CONSUL_HTTP_ADDR: '' });
    services.push(reg);
    nodes = await Promise.all(
      ['a', 'b', 'c'].map((id) =>
        startService(`node-${id}`, 'apps/inference/src/main.ts', {
          INFERENCE_PORT: '0',
          INFERENCE_NODE_ID: `node-${id}`,
          INFERENCE_CACHE_DIR: join(dir.path, `node-${id}`),
          REGISTRY_ADDRESS: reg.address,
          METRICS_PORT: '0',
          REDIS_URL: '',
          CONSUL_HTTP_ADDR: '',
        }),
      ),
    );
    services.push(...nodes);
    gateway = await startService('gateway', 'apps/gateway/src/main.ts', {
      GATEWAY_PORT: '0',
      GATEWAY_AUTH: 'off',
      REGISTRY_ADDRESS: reg.address,
      INFERENCE_NODES: nodes.map((n) => n.address).join(','),
      REDIS_URL: '',
      CONSUL_HTTP_ADDR: '',
    });
    services.push(gateway);
    registry = new RegistryClient(reg.address);
  }, 90_000);

  afterAll(async () => {
    registry?.close();
    for (const s of services) s.child.process.kill('SIGCONT');
    await Promise.all(services.map((s) => s.child.stop('SIGTERM').catch(() => s.child.stop('SIGKILL'))));
    dir.remove();
  });

  it('loses no call while the busiest node of a model is frozen (SIGSTOP, connections left open)', async () => {
    await registry.createModel('frozen');
    await registry.upload({ model: 'frozen', description: '', sha256: '', sizeBytes: 0, runtime: undefined, aliases: ['production'] }, [mlpModel({ seed: 5 })]);
    const freezeMs = Number(process.env.MAAS_FAULT_FREEZE_MS ?? 8000);
    const load = runLoad({ target: gateway.address, model: 'frozen', input: { name: 'input', shape: [1, 4] }, concurrency: 16, durationMs: freezeMs + 8000, deadlineMs: 5000 });
    // Freeze the node doing the most work once the load is flowing.
    let busiest: TestService | undefined;
    await waitFor(
      async () => {
        const counts = await Promise.all(nodes.map((n) => predictsOn(n, 'frozen')));
        const most = Math.max(...counts);
        if (most < 300) return false;
        busiest = nodes[counts.indexOf(most)];
        return true;
      },
      { timeoutMs: 20_000, description: 'the load to reach the nodes' },
    );
    busiest!.child.process.kill('SIGSTOP');
    try {
      await hold(freezeMs);
    } finally {
      busiest!.child.process.kill('SIGCONT');
    }
    const result = await load;
    console.log(`SIGSTOP of ${busiest!.child.process.pid} for ${freezeMs} ms under c=16: ${JSON.stringify(result)}`);
    expect(result.errors).toEqual({});
    expect(result.ok).toBeGreaterThan(1000);
    // Never a window without completions as long as a healthy replica serves.
    expect(result.maxGapMs).toBeLessThan(2000);
  }, 90_000);
});
