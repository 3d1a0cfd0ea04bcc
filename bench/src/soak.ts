// `npm run soak [-- --duration 300]`: steady Predict load through the gateway
// on loopback (registry, two inference nodes, gateway, Redis) for a bounded
// time, sampling every process's resident memory. Memory must stay flat: a
// V8 heap settles during the first part of a run, so the bar is on the second
// half (a leak keeps growing there), while start-to-end growth is reported
// too. The run fails when any process grew by more than --max-growth MiB over
// the second half, or when any request failed.
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { mlpModel } from '@maas/onnx';
import { RegistryClient } from '@maas/registry-client';
import { startRedis } from '@maas/testing';
import { memoryOf, runJob, startRegistry, startServer, type BenchProcess } from './processes';
import type { RunResult } from './stats';

const opts = new Command('soak')
  .option('--duration <seconds>', 'length of the measured load (at most 300)', '300')
  .option('--warmup <seconds>', 'load before the starting memory is taken', '10')
  .option('--concurrency <n>', 'concurrent callers', '16')
  .option('--max-growth <MiB>', 'largest allowed RSS growth of any process over the second half of the run', '24')
  .parse()
  .opts<{ duration: string; warmup: string; concurrency: string; maxGrowth: string }>();

const durationS = Math.min(300, Number(opts.duration));
const warmupS = Number(opts.warmup);
const mib = (bytes: number) => bytes / 1024 ** 2;
const log = (text: string) => process.stdout.write(`${text}\n`);

async function main(): Promise<number> {
  if (![durationS, warmupS, Number(opts.concurrency), Number(opts.maxGrowth)].every((n) => Number.isFinite(n) && n > 0)) {
    throw new Error('--duration, --warmup, --concurrency and --max-growth must be positive numbers');
  }
  const work = join(tmpdir(), `maas-soak-${process.pid}`);
  mkdirSync(work, { recursive: true });
  const redis = await startRedis();
  const servers: BenchProcess[] = [];
  try {
    const registry = await startRegistry(work, redis.url);
    servers.push(registry);
    const registryAddress = `127.0.0.1:${registry.port}`;
    const nodes: BenchProcess[] = [];
    for (const id of ['soak-a', 'soak-b']) {
      nodes.push(
        await startServer(id, 'apps/inference/src/main.ts', { INFERENCE_PORT: '0', INFERENCE_NODE_ID: id, INFERENCE_CACHE_DIR: join(work, id), REGISTRY_ADDRESS: registryAddress }),
      );
    }
    servers.push(...nodes);
    const gateway = await startServer('gateway', 'apps/gateway/src/main.ts', {
      GATEWAY_PORT: '0',
      GATEWAY_HTTP_PORT: '0',
      GATEWAY_AUTH: 'off',
      INFERENCE_NODES: nodes.map((n) => `127.0.0.1:${n.port}`).join(','),
      REGISTRY_ADDRESS: registryAddress,
      REDIS_URL: redis.url,
    });
    servers.push(gateway);
    const client = new RegistryClient(registryAddress);
    await client.createModel('soak');
    const runtime = { maxBatchSize: 32, maxQueueDelayMicros: 500, instanceCount: 1, maxQueueSize: 4096 };
    await client.upload({ model: 'soak', description: '', sha256: '', sizeBytes: 0, runtime, aliases: ['production'] }, [mlpModel({ seed: 7 })]);
    client.close();

    const peak = new Map<string, number>();
    let start: Map<string, number> | undefined;
    let mid: Map<string, number> | undefined;
    const sample = () => {
      const now = new Map(servers.map((s) => [s.name, memoryOf(s.child.pid!).rss]));
      if (redis.pid) now.set('redis', memoryOf(redis.pid).rss);
      for (const [name, rss] of now) peak.set(name, Math.max(peak.get(name) ?? 0, rss));
      return now;
    };
    const timer = setInterval(sample, 1000);
    const startTimer = setTimeout(() => (start = sample()), warmupS * 1000);
    const midTimer = setTimeout(() => (mid = sample()), (warmupS + durationS / 2) * 1000);
    log(`soak: ${warmupS} s warm-up, then ${durationS} s at concurrency ${opts.concurrency} through the gateway`);
    const result = await runJob<RunResult>('bench/src/load-generator.ts', {
      target: `127.0.0.1:${gateway.port}`,
      kind: 'gateway-predict',
      model: 'soak',
      version: 0,
      inputName: 'input',
      inputShape: [1, 4],
      concurrency: Number(opts.concurrency),
      warmupMs: warmupS * 1000,
      durationMs: durationS * 1000,
    });
    clearInterval(timer);
    clearTimeout(startTimer);
    clearTimeout(midTimer);
    const end = sample();
    const failed = Object.values(result.errors).reduce((a, b) => a + b, 0);
    log(`requests: ${result.count} answered (${result.throughput.toFixed(0)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms), ${failed} failed ${failed ? JSON.stringify(result.errors) : ''}`);
    log('| process | RSS after warm-up MiB | RSS at mid-run MiB | RSS at end MiB | growth start→end MiB | growth mid→end MiB | peak MiB |');
    log('|---|---|---|---|---|---|---|');
    let worst = 0;
    for (const [name, endRss] of end) {
      const startRss = start?.get(name) ?? NaN;
      const midRss = mid?.get(name) ?? NaN;
      const secondHalf = mib(endRss - midRss);
      worst = Math.max(worst, Number.isFinite(secondHalf) ? secondHalf : Infinity);
      const cells = [startRss, midRss, endRss, endRss - startRss, endRss - midRss, peak.get(name) ?? NaN].map((b) => mib(b).toFixed(1));
      log(`| ${name} | ${cells.join(' | ')} |`);
    }
    log(`| load generator | - | - | - | - | - | ${mib(result.maxRss ?? NaN).toFixed(1)} |`);
    const flat = worst <= Number(opts.maxGrowth);
    log(`memory ${flat ? 'flat' : 'NOT flat'}: largest second-half growth ${worst.toFixed(1)} MiB (bar ${opts.maxGrowth} MiB); ${failed === 0 ? 'no failed requests' : `${failed} FAILED requests`}`);
    return flat && failed === 0 && result.count > 0 ? 0 : 1;
  } finally {
    for (const server of servers.reverse()) await server.stop();
    await redis.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`soak failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
