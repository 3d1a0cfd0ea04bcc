import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, isPortOpen } from './free-port';
import { waitFor } from './wait-for';

/** A real `redis-server` the test started on a free port. */
export interface TestRedis {
  port: number;
  url: string;
  /** Stops the server (SIGTERM) and waits for it to exit. */
  stop(): Promise<void>;
  /** Kills it with SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port after stop/kill. */
  restart(): Promise<void>;
  /** Process id of the running server (for memory readings); undefined while stopped. */
  readonly pid: number | undefined;
}

/** Path of redis-server, or undefined when it is not installed. */
export function redisServerPath(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  return found.status === 0 && path ? path : undefined;
}

/** Starts `redis-server` with no persistence on a free loopback port. */
export async function startRedis(): Promise<TestRedis> {
  const binary = redisServerPath();
  if (!binary) throw new Error('redis-server is not installed: run `apt-get install -y redis-server` (the CI script does)');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'maas-redis-'));
  let child: ChildProcess | undefined;

  const launch = async () => {
    const proc = spawn(
      binary,
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'],
      { stdio: 'ignore' },
    );
    child = proc;
    await waitFor(() => isPortOpen(port), { timeoutMs: 10_000, description: `redis-server on port ${port}` });
  };
  const exit = async (signal: NodeJS.Signals) => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
  };

  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return child?.pid;
    },
    async stop() {
      await exit('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
    kill: () => exit('SIGKILL'),
    restart: launch,
  };
}
