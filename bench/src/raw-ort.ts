// Baseline A: onnxruntime-node in this process, no gRPC at all. Runs
// `concurrency` concurrent session.run loops on one session and prints one
// JSON RunResult.
import { InferenceSession, Tensor } from 'onnxruntime-node';
import { summarise } from './stats';

interface RawJob {
  modelPath: string;
  inputName: string;
  inputShape: number[];
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  intraOpThreads: number;
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as RawJob;
  const session = await InferenceSession.create(job.modelPath, {
    intraOpNumThreads: job.intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  const elements = job.inputShape.reduce((a, b) => a * b, 1);
  const values = Float32Array.from({ length: elements }, (_, i) => Math.sin(i));
  const latencies: number[] = [];
  const started = performance.now();
  const measureFrom = started + job.warmupMs;
  const end = measureFrom + job.durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await session.run({ [job.inputName]: new Tensor('float32', values, job.inputShape) });
      if (t0 >= measureFrom) latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, worker));
  await session.release();
  process.stdout.write(`${JSON.stringify({ ...summarise(latencies, job.durationMs / 1000), maxRss: process.resourceUsage().maxRSS * 1024 })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`raw onnxruntime run failed: ${String(err)}\n`);
  process.exit(1);
});
