import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { waitFor } from './wait-for';
import { bufferMallocEnvFor } from '@maas/config';

/** The repository root, two levels above `libs/testing/src`. */
export const REPO_ROOT = resolve(__dirname, '..', '..', '..');

/** Options of {@link startChild}. */
export interface ChildOptions {
  /** Entry point relative to the repository root: TypeScript runs through tsx, compiled `dist/**.js` as plain node. */
  entry: string;
  args?: string[];
  /** Added to the parent's environment. */
  env?: Record<string, string | undefined>;
  /** Resolves once a stdout line satisfies it (a JSON log line is parsed first). @default first line */
  readyWhen?: (line: ParsedLine) => boolean;
  /** @default 30000 */
  readyTimeoutMs?: number;
  /** Name used in error messages. */
  name?: string;
  /** Every stdout line is also appended here, for a test process of another language to read. */
  logFile?: string;
}

/** One stdout line, with its JSON parse when it was a JSON log line. */
export interface ParsedLine {
  text: string;
  json?: Record<string, unknown>;
}

/** A service process started by a test. */
export interface TestChild {
  process: ChildProcess;
  pid: number;
  /** Every stdout line so far. */
  lines: ParsedLine[];
  /** Every stderr chunk so far, joined. */
  stderr(): string;
  /** Waits for a stdout line satisfying `predicate`, already seen or future. */
  waitForLine(predicate: (line: ParsedLine) => boolean, timeoutMs?: number): Promise<ParsedLine>;
  /** Sends a signal and waits for exit; resolves to the exit code (or the signal name). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
  /** Resolves when the process has exited. */
  exited: Promise<number | string>;
}

function parseLine(text: string): ParsedLine {
  if (text.startsWith('{')) {
    try {
      return { text, json: JSON.parse(text) as Record<string, unknown> };
    } catch {
      return { text };
    }
  }
  return { text };
}

/**
 * Starts `node --import tsx <entry>` (or `node <entry>` for a compiled .js) from the repository root and waits for its ready line.
 * The caller owns the child and must `stop()` it.
 */
export async function startChild(options: ChildOptions): Promise<TestChild> {
  const name = options.name ?? options.entry;
  // MAAS_CHILD_NODE_ARGS (say "--cpu-prof --cpu-prof-dir=/tmp/prof") go to the child named MAAS_CHILD_NODE_ARGS_FOR.
  const nodeArgs = process.env.MAAS_CHILD_NODE_ARGS && options.name === process.env.MAAS_CHILD_NODE_ARGS_FOR ? process.env.MAAS_CHILD_NODE_ARGS.split(' ') : [];
  const loader = options.entry.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const proc = spawn(process.execPath, [...nodeArgs, ...loader, options.entry, ...(options.args ?? [])], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: ParsedLine[] = [];
  let stderr = '';
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  createInterface({ input: proc.stdout! }).on('line', (text) => {
    lines.push(parseLine(text));
    if (options.logFile) appendFileSync(options.logFile, `${text}\n`);
  });
  const exited = new Promise<number | string>((done) => {
    proc.once('exit', (code, signal) => done(code ?? signal ?? -1));
  });
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });

  const waitForLine = async (predicate: (line: ParsedLine) => boolean, timeoutMs = 30_000) =>
    waitFor(
      () => {
        const found = lines.find(predicate);
        if (found) return found;
        if (hasExited) throw new Error(`${name} exited before the expected line; stderr:\n${stderr.slice(-4000)}`);
        return undefined;
      },
      { timeoutMs, description: `${name} to print the expected line`, intervalMs: 25 },
    );

  const child: TestChild = {
    process: proc,
    pid: proc.pid ?? -1,
    lines,
    stderr: () => stderr,
    waitForLine,
    exited,
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      if (!hasExited) proc.kill(signal);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          proc.kill('SIGKILL');
          reject(new Error(`${name} did not exit within ${timeoutMs} ms of ${signal}`));
        }, timeoutMs);
      });
      try {
        return await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
  try {
    await waitForLine(options.readyWhen ?? (() => true), options.readyTimeoutMs ?? 30_000);
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  }
  return child;
}

/** A MaaS service process started by {@link startService}, with the ports its `listening` line gave. */
export interface TestService {
  child: TestChild;
  port: number;
  address: string;
  metricsPort?: number;
  /** A gateway's REST port. */
  httpPort?: number;
  /** Everything its "listening" line said (a gateway's embedded node, say). */
  ready: Record<string, unknown>;
}

/**
 * Starts one MaaS service entry point (registry, inference node, gateway) as
 * its own process and waits for its `listening` log line.
 */
export async function startService(name: string, entry: string, env: Record<string, string>, options: { logFile?: string } = {}): Promise<TestService> {
  // The malloc settings compose and `maas dev` give the service.
  const malloc = bufferMallocEnvFor(entry, env);
  // A gateway's REST side on a free port, unless the test names one: several gateways share a machine here.
  const rest = /apps\/gateway\/src\/main\.ts$/.test(entry) ? { GATEWAY_HTTP_PORT: '0' } : {};
  const child = await startChild({ entry, env: { ...malloc, ...rest, ...env }, name, logFile: options.logFile, readyWhen: (l) => l.json?.msg === 'listening' });
  const ready = child.lines.find((l) => l.json?.msg === 'listening')!.json!;
  const port = ready.port as number;
  return { child, port, address: `127.0.0.1:${port}`, metricsPort: ready.metricsPort as number | undefined, httpPort: ready.httpPort as number | undefined, ready };
}
