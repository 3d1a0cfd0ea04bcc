// A load generator process: a grpc-js client driving one kind of call at a
// fixed concurrency, printing one JSON RunResult on stdout.
import { credentials, Metadata, status as grpcStatus, type ServiceError } from '@grpc/grpc-js';
import { DataType, GatewayServiceClient, InferenceServiceClient, PredictRequest, RegistryServiceClient } from '@maas/proto';
import { InferenceClient } from '@maas/inference-client';
import { callUnary, defaultClientOptions, RECEIVE_WINDOW_BYTES } from '@maas/rpc';
import { announceWindow } from './processes';
import { summarise } from './stats';

/** What to drive. */
export interface LoadJob {
  target: string;
  /** client-predict: the typed client for internal callers (@maas/inference-client); `target` lists the nodes, comma-separated. */
  kind: 'gateway-predict' | 'node-predict' | 'client-predict' | 'registry-get-version';
  model: string;
  version: number;
  inputName: string;
  inputShape: number[];
  /** The artifact the version resolves to: a node given it skips asking the registry per call. */
  sha256?: string;
  concurrency: number;
  warmupMs: number;
  durationMs: number;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as LoadJob;
  const options = defaultClientOptions(256 * 1024 * 1024, { receiveWindowBytes: RECEIVE_WINDOW_BYTES });
  const elements = job.inputShape.reduce((a, b) => a * b, 1);
  const values = Float32Array.from({ length: elements }, (_, i) => Math.sin(i));
  const request: PredictRequest = {
    model: job.model,
    version: job.version,
    alias: '',
    inputs: [{ name: job.inputName, dtype: DataType.DATA_TYPE_FLOAT32, shape: job.inputShape, rawData: Buffer.from(values.buffer), stringData: [] }],
    outputNames: [],
    sha256: job.sha256 ?? '',
  };
  let call: () => Promise<unknown>;
  let close: () => void;
  if (job.kind === 'client-predict') {
    const client = new InferenceClient({ nodes: job.target.split(',') });
    call = () => client.predict(request);
    close = () => void client.close();
  } else if (job.kind === 'registry-get-version') {
    const client = new RegistryServiceClient(job.target, credentials.createInsecure(), options);
    call = () => callUnary(client.getVersion.bind(client), { model: job.model, version: job.version });
    close = () => client.close();
  } else {
    // The request is encoded once and its bytes sent on every call, so the load generator spends
    // its share of the cores on calls rather than on re-encoding the same tensor.
    const client =
      job.kind === 'gateway-predict'
        ? new GatewayServiceClient(job.target, credentials.createInsecure(), options)
        : new InferenceServiceClient(job.target, credentials.createInsecure(), options);
    const path = job.kind === 'gateway-predict' ? '/maas.v1.GatewayService/Predict' : '/maas.v1.InferenceService/Predict';
    const encoded = Buffer.from(PredictRequest.encode(request).finish());
    const identity = (b: Buffer) => b;
    call = () =>
      new Promise<Buffer>((resolve, reject) => {
        client.makeUnaryRequest(path, identity, identity, encoded, new Metadata(), {}, (err, response) => (err ? reject(err) : resolve(response!)));
      });
    close = () => client.close();
  }

  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  let completed = 0;
  const started = performance.now();
  const measureFrom = started + job.warmupMs;
  const end = measureFrom + job.durationMs;
  // The parent reads every process's CPU time from /proc when the window opens and when it closes. The
  // window closes on time, not once the calls still out have drained: CPU per request is the window's CPU
  // over the calls completed inside it, so neither the calls out when it opens nor the drain are counted
  // without their share of the work.
  const closed = announceWindow(job.warmupMs, job.durationMs);
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        await call();
        const t1 = performance.now();
        if (t0 >= measureFrom) latencies.push(t1 - t0);
        if (t1 >= measureFrom && t1 < end) completed += 1;
      } catch (err) {
        const code = grpcStatus[(err as ServiceError).code] ?? 'UNKNOWN';
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
  };
  await Promise.all([...Array.from({ length: job.concurrency }, worker), closed]);
  close();
  const result = summarise(latencies, job.durationMs / 1000, errors, completed);
  const usage = process.resourceUsage();
  process.stdout.write(`${JSON.stringify({ ...result, maxRss: usage.maxRSS * 1024, cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6 })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`load generator failed: ${String(err)}\n`);
  process.exit(1);
});
