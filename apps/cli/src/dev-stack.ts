import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { bufferMallocEnvFor } from '@maas/config';

/** Set in the compiled CLI (tools/build.cjs defines it): the services then run compiled too. */
const COMPILED = process.env.MAAS_COMPILED === '1';

/** The repository root (apps/cli/src → ../../..; compiled, dist/cli → ../..). */
export const REPO_ROOT = COMPILED ? resolve(__dirname, '..', '..') : resolve(__dirname, '..', '..', '..');

/** How a service's entry runs: `node dist/<app>/main.js` from the compiled CLI, else its source through tsx. */
function serviceCommand(entry: string): string[] {
  const app = /^apps\/([a-z]+)\/src\/main\.ts$/.exec(entry)?.[1];
  if (COMPILED && app) return [join(REPO_ROOT, 'dist', app, 'main.js')];
  return ['--import', 'tsx', join(REPO_ROOT, entry)];
}

/** One service process of the development stack. */
export interface ServiceProcess {
  name: string;
  child: ChildProcess;
  /** Port from its `listening` line. */
  port: number;
  /** REST port from its `listening` line (the gateway's). */
  httpPort?: number;
  exited: Promise<number | string>;
}

/** Options of {@link startServiceProcess}. */
export interface ServiceProcessOptions {
  name: string;
  /** Entry file relative to the repository root. */
  entry: string;
  env: Record<string, string>;
  /** Where each log line goes, already prefixed. */
  log: (line: string) => void;
  readyTimeoutMs?: number;
}

function describeLine(name: string, text: string): string {
  try {
    const json = JSON.parse(text) as { level?: number; msg?: string; [k: string]: unknown };
    const level = json.level && json.level >= 50 ? 'ERROR ' : json.level && json.level >= 40 ? 'WARN ' : '';
    const { level: _l, time: _t, pid: _p, hostname: _h, name: _n, service: _s, msg, ...rest } = json;
    const extra = Object.entries(rest)
      .filter(([, v]) => v !== undefined && typeof v !== 'object')
      .map(([k, v]) => `${k}=${String(v)}`)
      .join(' ');
    return `[${name}] ${level}${msg ?? ''}${extra ? `  ${extra}` : ''}`;
  } catch {
    return `[${name}] ${text}`;
  }
}

/**
 * Starts one service (compiled, or `node --import tsx <entry>` from source)
 * and resolves once it logged `listening`. Rejects if it exits or stays
 * silent past the timeout.
 */
export function startServiceProcess(options: ServiceProcessOptions): Promise<ServiceProcess> {
  const child = spawn(process.execPath, serviceCommand(options.entry), {
    cwd: REPO_ROOT,
    // The malloc settings compose gives the service (jemalloc for the relaying gateway, see bufferMallocEnvFor).
    env: { ...process.env, TSX_TSCONFIG_PATH: join(REPO_ROOT, 'tsconfig.json'), ...bufferMallocEnvFor(options.entry, options.env), ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | string>((done) => child.once('exit', (code, signal) => done(code ?? signal ?? -1)));
  createInterface({ input: child.stderr! }).on('line', (line) => options.log(`[${options.name}] ${line}`));
  return new Promise<ServiceProcess>((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${options.name} did not report listening within ${options.readyTimeoutMs ?? 60_000} ms`));
    }, options.readyTimeoutMs ?? 60_000);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${options.name} exited (${code}) before it was ready; see its log above`));
    });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      options.log(describeLine(options.name, line));
      if (!line.includes('"listening"')) return;
      try {
        const { port, httpPort } = JSON.parse(line) as { port: number; httpPort?: number };
        clearTimeout(timer);
        resolvePromise({ name: options.name, child, port, httpPort, exited });
      } catch {
        // not the ready line
      }
    });
  });
}

/** Port layout of the stack: fixed defaults, or 0 everywhere for free ports. */
export interface DevPorts {
  gateway: number;
  /** The gateway's REST side (Open Inference Protocol over HTTP). */
  gatewayHttp: number;
  registry: number;
  nodes: [number, number];
}

export const DEFAULT_PORTS: DevPorts = { gateway: 50050, gatewayHttp: 8000, registry: 50051, nodes: [50061, 50062] };
export const FREE_PORTS: DevPorts = { gateway: 0, gatewayHttp: 0, registry: 0, nodes: [0, 0] };

/** A running development stack. */
export interface DevStack {
  processes: ServiceProcess[];
  gatewayAddress: string;
  /** host:port of the gateway's REST side. */
  gatewayHttpAddress: string;
  registryAddress: string;
  /** SIGTERM to every process (gateway first, registry last); resolves to their exit codes. */
  stop(): Promise<Array<number | string>>;
}

/**
 * Runs registry, two inference nodes and the gateway as child processes on
 * one machine. Consul and Redis are used when CONSUL_HTTP_ADDR / REDIS_URL
 * are set in the environment; otherwise static addresses and memory caches.
 */
export async function startDevStack(options: { ports: DevPorts; dataDir: string; log: (line: string) => void }): Promise<DevStack> {
  mkdirSync(options.dataDir, { recursive: true });
  const started: ServiceProcess[] = [];
  const stop = async () => {
    const codes: Array<number | string> = [];
    for (const p of [...started].reverse()) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
      codes.push(await p.exited);
    }
    return codes.reverse();
  };
  try {
    const registry = await startServiceProcess({
      name: 'registry',
      entry: 'apps/registry/src/main.ts',
      env: { REGISTRY_PORT: String(options.ports.registry), REGISTRY_DATA_DIR: join(options.dataDir, 'registry') },
      log: options.log,
    });
    started.push(registry);
    const registryAddress = `127.0.0.1:${registry.port}`;
    const nodes = await Promise.all(
      options.ports.nodes.map((port, i) =>
        startServiceProcess({
          name: `node-${i + 1}`,
          entry: 'apps/inference/src/main.ts',
          env: {
            INFERENCE_PORT: String(port),
            INFERENCE_NODE_ID: `node-${i + 1}`,
            INFERENCE_CACHE_DIR: join(options.dataDir, `node-${i + 1}`),
            REGISTRY_ADDRESS: registryAddress,
          },
          log: options.log,
        }),
      ),
    );
    started.push(...nodes);
    const gateway = await startServiceProcess({
      name: 'gateway',
      entry: 'apps/gateway/src/main.ts',
      env: {
        GATEWAY_PORT: String(options.ports.gateway),
        GATEWAY_HTTP_PORT: String(options.ports.gatewayHttp),
        GATEWAY_AUTH: process.env.GATEWAY_AUTH || 'off',
        INFERENCE_NODES: nodes.map((n) => `127.0.0.1:${n.port}`).join(','),
        REGISTRY_ADDRESS: registryAddress,
      },
      log: options.log,
    });
    started.push(gateway);
    return { processes: started, gatewayAddress: `127.0.0.1:${gateway.port}`, gatewayHttpAddress: `127.0.0.1:${gateway.httpPort}`, registryAddress, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
