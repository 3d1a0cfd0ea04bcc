import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { buildSync, type BuildOptions } from 'esbuild';
import { bufferMallocEnvFor } from '@maas/config';
import type { RunResult } from './stats';

export const REPO_ROOT = resolve(__dirname, '..', '..');

/** A server process of the benchmark. */
export interface BenchProcess {
  name: string;
  child: ChildProcess;
  port: number;
  /** Its "listening" line (a gateway's embedded node, say). */
  ready: Record<string, unknown>;
  /** Where its node's /metrics answer (a node's, or a gateway's embedded node's), when they are on. */
  nodeMetricsPort?: number;
  stop(): Promise<void>;
}

/** A window's entry for the CPU time a process's session threads spent inside onnxruntime runs. */
export const ONNXRUNTIME_SUFFIX = ' in onnxruntime';

/** The node's maas_inference_run_cpu_seconds_total summed over versions; NaN when it cannot be read. */
async function runCpuSecondsOf(metricsPort: number): Promise<number> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith('maas_inference_run_cpu_seconds_total{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    return sum;
  } catch {
    return Number.NaN;
  }
}

function nodeArgs(entry: string, args: string[], nodeFlags: string[] = []): string[] {
  return [...nodeFlags, '--import', 'tsx', join(REPO_ROOT, entry), ...args];
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { bundleOptions } = require('../../tools/build.cjs') as { bundleOptions(entry: string, outfile: string): BuildOptions };

const built = new Set<string>();

/**
 * The file a server entry runs as, with plain node: a service as it ships,
 * compiled by tools/build.cjs into dist/<app>/main.js, and the benchmark's
 * own servers bundled with the same options into dist/bench/. Each is built afresh
 * once per benchmark process, so nothing stale is measured, and tsx's loader
 * (and its source-mapped stack traces) is no part of what is measured. Jobs
 * (the load generator, raw onnxruntime) still run through tsx: they are the
 * same client on every side of a comparison.
 */
function compiledEntry(entry: string): string {
  const app = /^apps\/([^/]+)\/src\/main\.ts$/.exec(entry)?.[1];
  const out = app ? join(REPO_ROOT, 'dist', app, 'main.js') : join(REPO_ROOT, 'dist', 'bench', basename(entry).replace(/\.ts$/, '.js'));
  if (built.has(entry)) return out;
  if (app) execFileSync(process.execPath, [join(REPO_ROOT, 'tools/build.cjs'), app], { stdio: 'ignore' });
  else buildSync(bundleOptions(entry, out));
  built.add(entry);
  return out;
}

const env = (extra: Record<string, string>) => ({ ...process.env, TSX_TSCONFIG_PATH: join(REPO_ROOT, 'tsconfig.json'), LOG_LEVEL: 'warn', ...extra });

/**
 * Starts a server (compiled, see {@link compiledEntry}) and resolves once it
 * printed a JSON line with `"listening"` and a port. `nodeFlags` go to node itself (`--cpu-prof` cannot travel in NODE_OPTIONS).
 */
export function startServer(name: string, entry: string, extraEnv: Record<string, string> = {}, args: string[] = [], nodeFlags: string[] = []): Promise<BenchProcess> {
  // Services run as deployed, with the malloc settings compose gives them.
  const malloc = bufferMallocEnvFor(entry, extraEnv);
  const child = spawn(process.execPath, [...nodeFlags, compiledEntry(entry), ...args], { cwd: REPO_ROOT, env: env({ LOG_LEVEL: 'info', ...malloc, ...extraEnv }), stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolvePromise, reject) => {
    child.once('exit', (code) => reject(new Error(`${name} exited with ${code} before listening`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.includes('"listening"')) return;
      const ready = JSON.parse(line) as Record<string, unknown>;
      child.removeAllListeners('exit');
      const embedded = ready.embeddedNode as { metricsPort?: number } | undefined;
      const nodeMetricsPort = (embedded ? embedded.metricsPort : entry === 'apps/inference/src/main.ts' ? ready.metricsPort : undefined) as number | undefined;
      resolvePromise({
        name,
        child,
        port: ready.port as number,
        ready,
        nodeMetricsPort,
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
  });
}

/** Line a job prints when its measured window opens, and when it closes. */
export const PHASE_MEASURE = '{"phase":"measure"}';
export const PHASE_END = '{"phase":"end"}';

/**
 * Prints a job's window lines on time: PHASE_MEASURE `warmupMs` from now and
 * PHASE_END `durationMs` later, whatever is still out then (the job counts
 * what completes inside the window); resolves once PHASE_END is out.
 */
export function announceWindow(warmupMs: number, durationMs: number): Promise<void> {
  setTimeout(() => process.stdout.write(`${PHASE_MEASURE}\n`), warmupMs);
  return new Promise<void>((resolve) =>
    setTimeout(() => {
      process.stdout.write(`${PHASE_END}\n`);
      resolve();
    }, warmupMs + durationMs),
  );
}

/**
 * CPU seconds each watched process (and the job itself, as `load`) used
 * between the job's PHASE_MEASURE and PHASE_END lines.
 */
export type WindowCpu = Record<string, number>;

/**
 * Runs a one-shot job process and parses the JSON it prints last. With
 * `watch`, reads the CPU time of those processes and of the job from /proc
 * when the job opens and closes its measured window, and of the watched
 * nodes' onnxruntime runs from their metrics (`<name> in onnxruntime`).
 */
export function runJob<T>(entry: string, job: object, watch: BenchProcess[] = []): Promise<T & { windowCpu?: WindowCpu; windowFaults?: Record<string, number> }> {
  const child = spawn(process.execPath, nodeArgs(entry, [JSON.stringify(job)]), { cwd: REPO_ROOT, env: env({}), stdio: ['ignore', 'pipe', 'inherit'] });
  const processes = () => [{ name: 'load', pid: child.pid! }, ...watch.map((w) => ({ name: w.name, pid: w.child.pid! }))];
  const nodes = watch.filter((w) => w.nodeMetricsPort !== undefined);
  let opened: Record<string, ProcessUsage> | undefined;
  let windowCpu: WindowCpu | undefined;
  let windowFaults: Record<string, number> | undefined;
  // One read of /proc/<pid>/stat a process gives both its CPU time and its page faults.
  const sample = () => Object.fromEntries(processes().map((p) => [p.name, usageOf(p.pid)]));
  // Scraped as the window opens and closes; a scrape takes milliseconds of a window of seconds. Versions
  // run on the event loop's thread have no such figure, and no entry.
  const scrape = () => Promise.all(nodes.map(async (w) => [`${w.name}${ONNXRUNTIME_SUFFIX}`, await runCpuSecondsOf(w.nodeMetricsPort!)] as const));
  let runsOpened: Promise<ReadonlyArray<readonly [string, number]>> | undefined;
  let runsClosed: Promise<ReadonlyArray<readonly [string, number]>> | undefined;
  let last = '';
  createInterface({ input: child.stdout! }).on('line', (line) => {
    if (line === PHASE_MEASURE) {
      opened = sample();
      runsOpened = scrape();
    } else if (line === PHASE_END && opened) {
      const closed = Object.entries(sample());
      runsClosed = scrape();
      windowCpu = Object.fromEntries(closed.map(([name, usage]) => [name, usage.cpuSeconds - opened![name].cpuSeconds]));
      windowFaults = Object.fromEntries(closed.map(([name, usage]) => [name, usage.minorFaults - opened![name].minorFaults]));
    } else if (line.trim()) last = line;
  });
  return new Promise((resolvePromise, reject) => {
    child.once('close', async (code) => {
      if (code !== 0) return reject(new Error(`${entry} exited with ${code}`));
      try {
        if (windowCpu && runsOpened && runsClosed) {
          const [from, to] = await Promise.all([runsOpened, runsClosed]);
          for (const [i, [name, seconds]] of to.entries()) if (seconds - from[i][1] > 0) windowCpu[name] = seconds - from[i][1];
        }
        resolvePromise({ ...(JSON.parse(last) as T), windowCpu, windowFaults });
      } catch (err) {
        reject(new Error(`${entry} printed no result: ${String(err)}`));
      }
    });
  });
}

/**
 * A job's result with its window's CPU time as milliseconds per request completed in the window
 * (`cpuMsPerRequest`), and its processes' minor page faults per request (`faultsPerRequest`).
 */
export function withCpu(result: RunResult & { windowCpu?: WindowCpu; windowFaults?: Record<string, number> }): RunResult {
  const { windowCpu, windowFaults, ...rest } = result;
  if (!windowCpu || result.count === 0) return rest;
  const perRequest = (counts: Record<string, number>, scale: number) => Object.fromEntries(Object.entries(counts).map(([name, n]) => [name, (n * scale) / result.count]));
  return { ...rest, cpuMsPerRequest: perRequest(windowCpu, 1000), ...(windowFaults ? { faultsPerRequest: perRequest(windowFaults, 1) } : {}) };
}

/** What a process has used so far, from one read of /proc/<pid>/stat. */
export interface ProcessUsage {
  /** CPU seconds, user + system. */
  cpuSeconds: number;
  /**
   * Minor page faults: each is a page of memory touched for the first time since it was mapped or handed
   * back to the system, and costs microseconds of kernel time (more on a virtual machine), so memory a
   * process frees and maps again on every request shows here.
   */
  minorFaults: number;
}

/** CPU time and page faults a process has used so far. */
export function usageOf(pid: number): ProcessUsage {
  // The fields after the command name, state first: minflt is the 8th, utime and stime the 12th and 13th.
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { cpuSeconds: (Number(fields[11]) + Number(fields[12])) / 100, minorFaults: Number(fields[7]) };
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSecondsOf(pid: number): number {
  return usageOf(pid).cpuSeconds;
}

/** Current and peak resident memory of a process, bytes. */
export function memoryOf(pid: number): { rss: number; hwm: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Starts a registry keeping its data under `work` and caching in the Redis at `redisUrl`. */
export function startRegistry(work: string, redisUrl: string, extraEnv: Record<string, string> = {}): Promise<BenchProcess> {
  return startServer('registry', 'apps/registry/src/main.ts', { REGISTRY_PORT: '0', REGISTRY_DATA_DIR: join(work, 'registry'), REDIS_URL: redisUrl, ...extraEnv });
}
