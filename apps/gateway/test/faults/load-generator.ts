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
  /** Closed loop: this many calls in flight, each followed at once by the next. */
  concurrency: number;
  /** Open loop instead: this many calls started per second, whatever the answers (overload). */
  rate?: number;
  durationMs: number;
  deadlineMs: number;
  apiKey?: string;
}

interface MethodDefinition {
  path: string;
  requestSerialize(value: object): Buffer;
}
interface GatewayClient {
  makeUnaryRequest(path: string, serialize: (b: Buffer) => Buffer, deserialize: (b: Buffer) => Buffer, request: Buffer, metadata: Metadata, options: { deadline: number }, callback: (err: ServiceError | null) => void): void;
  close(): void;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as Job;
  const root = join(__dirname, '..', '..', '..', '..', 'proto');
  const definition = loadSync('maas/v1/gateway.proto', { includeDirs: [root], longs: Number, enums: Number, defaults: true });
  const service = (loadPackageDefinition(definition).maas as unknown as Record<string, Record<string, (new (...args: unknown[]) => GatewayClient) & { service: Record<string, MethodDefinition> }>>).v1.GatewayService;
  const client = new service(job.target, credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc-node.flow_control_window': 16 * 1024 * 1024 });
  const predict = service.service.Predict;
  const count = job.input.shape.reduce((a, b) => a * b, 1);
  const raw = Buffer.from(Float32Array.from({ length: count }, (_, i) => (i % 7) / 7).buffer);
  // Encoded once by proto-loader's serializer: the generator's CPU goes to calls, not to re-encoding one tensor.
  const request = predict.requestSerialize({ model: job.model, inputs: [{ name: job.input.name, dtype: 1, shape: job.input.shape, rawData: raw }] });
  const asIs = (b: Buffer) => b;
  const metadata = new Metadata();
  if (job.apiKey) metadata.set('authorization', `Bearer ${job.apiKey}`);

  const started = Date.now();
  const end = started + job.durationMs;
  const errors: Record<string, number> = {};
  /** The first failure's details for each status other than the overload ones, to say what went wrong. */
  const firstDetails: Record<string, string> = {};
  const latencies: number[] = [];
  /** How long refusals (RESOURCE_EXHAUSTED) took to come back. */
  const refusals: number[] = [];
  let lastDone = started;
  let maxGapMs = 0;
  const call = () =>
    new Promise<void>((resolve) => {
      const t0 = Date.now();
      client.makeUnaryRequest(predict.path, asIs, asIs, request, metadata, { deadline: t0 + job.deadlineMs }, (err) => {
        const now = Date.now();
        if (err) {
          const name = status[err.code] ?? String(err.code);
          errors[name] = (errors[name] ?? 0) + 1;
          if (err.code !== status.RESOURCE_EXHAUSTED && err.code !== status.DEADLINE_EXCEEDED) firstDetails[name] ??= err.details;
          if (err.code === status.RESOURCE_EXHAUSTED) refusals.push(now - t0);
        } else {
          latencies.push(now - t0);
          maxGapMs = Math.max(maxGapMs, now - lastDone);
          lastDone = now;
        }
        resolve();
      });
    });
  if (job.rate) {
    // Open loop: calls start on a fixed schedule; the run ends when the last of them has answered.
    const calls: Promise<void>[] = [];
    const interval = 1000 / job.rate;
    for (let i = 0; started + i * interval < end; i++) {
      const wait = started + i * interval - Date.now();
      if (wait > 1) await new Promise((resolve) => setTimeout(resolve, wait));
      calls.push(call());
    }
    await Promise.all(calls);
  } else {
    await Promise.all(
      Array.from({ length: job.concurrency }, async () => {
        while (Date.now() < end) await call();
      }),
    );
  }
  const quantile = (values: number[], q: number) => values.sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * q))] ?? 0;
  const seconds = job.durationMs / 1000;
  process.stdout.write(
    `${JSON.stringify({ ok: latencies.length, goodput: latencies.length / seconds, errors, firstDetails, maxGapMs, p50Ms: quantile(latencies, 0.5), p99Ms: quantile(latencies, 0.99), refusalP99Ms: quantile(refusals, 0.99), seconds: (Date.now() - started) / 1000, cpuSeconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6 })}\n`,
  );
  client.close();
}

main().catch((err: unknown) => {
  process.stderr.write(`load generator failed: ${String(err)}\n`);
  process.exit(1);
});
