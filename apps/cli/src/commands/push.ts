import { createHash } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError } from '../cli-error';
import type { Connection } from '../connection';

type Run = (fn: (conn: Connection) => Promise<void>) => () => Promise<void>;

interface PushOptions {
  alias: string[];
  description: string;
  maxBatchSize?: string;
  maxQueueDelayUs?: string;
  maxQueueSize?: string;
  instanceCount?: string;
  create: boolean;
}

async function sha256Of(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function integerOption(value: string | undefined, flag: string): number {
  if (value === undefined) return 0;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new CliError(`${flag} ${JSON.stringify(value)}: expected a non-negative integer`);
  return n;
}

/** `maas push <model> <file.onnx>`: streams the file with a progress bar, checks the sha256. */
export function registerPushCommand(program: Command, run: Run): void {
  program
    .command('push <model> <file>')
    .description('upload an ONNX file as the next version of a model (streamed, sha256-checked)')
    .option('-a, --alias <alias...>', 'aliases to point at the new version (e.g. production)', [])
    .option('-d, --description <text>', 'version description', '')
    .option('--max-batch-size <n>', 'dynamic batching: most rows per run (1 turns batching off)')
    .option('--max-queue-delay-us <n>', 'dynamic batching: longest wait for a batch, in microseconds')
    .option('--instance-count <n>', 'sessions of the version each node runs side by side (own weights and threads each)')
    .option('--max-queue-size <n>', 'requests that may wait per version before RESOURCE_EXHAUSTED')
    .option('--no-create', 'fail if the model does not exist instead of creating it')
    .action((model: string, file: string, opts: PushOptions) =>
      run(async (conn) => {
        const [{ SingleBar, Presets }, { status }, { statusOf }] = await Promise.all([import('cli-progress'), import('@grpc/grpc-js'), import('@maas/rpc')]);
        let size: number;
        try {
          size = statSync(file).size;
        } catch (err) {
          throw new CliError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
        }
        const runtime = {
          maxBatchSize: integerOption(opts.maxBatchSize, '--max-batch-size'),
          maxQueueDelayMicros: integerOption(opts.maxQueueDelayUs, '--max-queue-delay-us'),
          instanceCount: integerOption(opts.instanceCount, '--instance-count'),
          maxQueueSize: integerOption(opts.maxQueueSize, '--max-queue-size'),
        };
        const sha256 = await sha256Of(file);
        let created = false;
        if (opts.create) {
          created = await conn.registry.createModel(model, '', [], conn.call()).then(
            () => true,
            (err: unknown) => {
              if (statusOf(err) !== status.ALREADY_EXISTS) throw err;
              return false;
            },
          );
        }
        const bar = process.stderr.isTTY ? new SingleBar({ format: 'upload [{bar}] {percentage}% {value}/{total} B', stream: process.stderr }, Presets.shades_classic) : undefined;
        bar?.start(size, 0);
        try {
          const version = await conn.registry.upload(
            { model, description: opts.description, sha256, sizeBytes: size, runtime, aliases: opts.alias },
            createReadStream(file, { highWaterMark: 256 * 1024 }),
            { metadata: conn.metadata(), onProgress: (sent) => bar?.update(sent) },
          );
          bar?.stop();
          if (conn.options.json) process.stdout.write(`${JSON.stringify(version, null, 2)}\n`);
          else {
            process.stdout.write(`pushed ${version.model}:${version.version}  sha256=${version.sha256}  ${version.sizeBytes} B\n`);
            if (version.aliases.length) process.stdout.write(`aliases: ${version.aliases.join(', ')}\n`);
          }
        } catch (err) {
          // A failed push leaves nothing behind: not even the model this command created for it.
          if (created) await conn.registry.deleteModel(model, conn.call()).catch(() => undefined);
          throw err;
        } finally {
          bar?.stop();
        }
      })(),
    );
}
