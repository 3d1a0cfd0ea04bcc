// Baseline A: onnxruntime-node in this process, no gRPC at all. Runs
// `concurrency` concurrent session.run loops on one session, or spread over
// `instances` sessions on a worker thread each (the layout a node uses for a
// version with instance_count > 1), and prints one JSON RunResult.
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { announceWindow } from './processes';
import { summarise } from './stats';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { openLoop } = require('./raw-ort-loop.cjs') as { openLoop(job: RawJob): Promise<Loop> };

/** One session's loops: latencies of runs started in the window, and runs completed in it. */
interface Loop {
  measure(startAt: number): Promise<{ latencies: number[]; completed: number }>;
}

interface RawJob {
  modelPath: string;
  inputName: string;
  inputShape: number[];
  concurrency: number;
  warmupMs: number;
  durationMs: number;
  intraOpThreads: number;
  /** Sessions, one per worker thread; 1 runs the session on this thread. @default 1 */
  instances?: number;
}

/** A session on a worker thread of its own, measuring once told when to start. */
function threadLoop(job: RawJob): Promise<Loop> {
  const worker = new Worker(join(__dirname, 'raw-ort-loop.cjs'), { workerData: job });
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('message', () =>
      resolve({
        measure: (startAt) =>
          new Promise((done, fail) => {
            worker.once('message', done);
            worker.once('error', fail);
            worker.postMessage(startAt);
          }),
      }),
    );
  });
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2]) as RawJob;
  const instances = Math.max(1, job.instances ?? 1);
  // The concurrent loops are shared out over the instances; all of them measure the same window.
  const share = (i: number) => Math.max(1, Math.floor(job.concurrency / instances) + (i < job.concurrency % instances ? 1 : 0));
  const loops =
    instances === 1 ? [await openLoop(job)] : await Promise.all(Array.from({ length: instances }, (_, i) => threadLoop({ ...job, concurrency: share(i) })));
  const startAt = Date.now();
  // The loops measure from warmupMs after startAt; the parent reads CPU time from /proc when the window
  // opens and when it closes on time (see the load generator: the runs completed inside it are the count).
  const closed = announceWindow(job.warmupMs, job.durationMs);
  const [results] = await Promise.all([Promise.all(loops.map((l) => l.measure(startAt))), closed]);
  const latencies = results.flatMap((r) => r.latencies);
  const completed = results.reduce((sum, r) => sum + r.completed, 0);
  process.stdout.write(`${JSON.stringify({ ...summarise(latencies, job.durationMs / 1000, {}, completed), maxRss: process.resourceUsage().maxRSS * 1024 })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`raw onnxruntime run failed: ${String(err)}\n`);
  process.exit(1);
});
