// An independent load generator for the fault suite: its own process, its own client built by
// @grpc/proto-loader straight from proto/ (none of the project's client code), one deadline per call.
// Prints one JSON line of results when the run ends.
import { credentials, loadPackageDefinition, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { join } from 'node:path';

interface Job {
  target: string;
  model: string;
  input: { name: string; shape: number[] };
  concurrency: number;
  durationMs: number;
  deadlineMs: number;
  apiKey?: string;
}

type PredictFn = (request: object, metadata: Metadata, options: { deadline: number }, callback: (err: ServiceError | null, answer?: { version: number }) => void) => { cancel(): void };

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as Job;
  const root = join(__dirname, '..', '..', '..', '..', 'proto');
  const definition = loadSync('maas/v1/gateway.proto', { includeDirs: [root], longs: Number, enums: Number, defaults: true });
  const maas = (loadPackageDefinition(definition).maas as unknown as Record<string, Record<string, new (...args: unknown[]) => { Predict: PredictFn; close(): void }>>).v1;
  const client = new maas.GatewayService(job.target, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  const count = job.input.shape.reduce((a, b) => a * b, 1);
  const raw = Buffer.from(Float32Array.from({ length: count }, (_, i) => (i % 7) / 7).buffer);
  const request = { model: job.model, inputs: [{ name: job.input.name, dtype: 1, shape: job.input.shape, rawData: raw }] };
  const metadata = new Metadata();
  if (job.apiKey) metadata.set('authorization', `Bearer ${job.apiKey}`);

  const started = Date.now();
  const end = started + job.durationMs;
  const errors: Record<string, number> = {};
  const latencies: number[] = [];
  let lastDone = started;
  let maxGapMs = 0;
  const call = () =>
    new Promise<void>((resolve) => {
      const t0 = Date.now();
      client.Predict(request, metadata, { deadline: t0 + job.deadlineMs }, (err) => {
        const now = Date.now();
        if (err) {
          const name = status[err.code] ?? String(err.code);
          errors[name] = (errors[name] ?? 0) + 1;
        } else {
          latencies.push(now - t0);
          maxGapMs = Math.max(maxGapMs, now - lastDone);
          lastDone = now;
        }
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: job.concurrency }, async () => {
      while (Date.now() < end) await call();
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0;
  process.stdout.write(`${JSON.stringify({ ok: latencies.length, errors, maxGapMs, p50Ms: at(0.5), p99Ms: at(0.99), seconds: (Date.now() - started) / 1000 })}\n`);
  client.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`load generator failed: ${String(err)}\n`);
  process.exit(1);
});
