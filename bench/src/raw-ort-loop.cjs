// One baseline-A measuring loop: a single onnxruntime-node session driven by
// `concurrency` concurrent session.run loops. Runs in the raw-ort process
// itself or, with several instances, on a worker thread each (raw-ort.ts).
// Plain CommonJS, so a worker thread loads it without a TypeScript loader.
const { isMainThread, parentPort, workerData } = require('node:worker_threads');
const { performance } = require('node:perf_hooks');
const { InferenceSession, Tensor } = require('onnxruntime-node');

/**
 * Opens the session; the returned `measure(startAt)` runs the loops over the
 * window that opens `warmupMs` after the epoch-ms `startAt` and lasts
 * `durationMs`, and resolves with the latencies (ms) of runs started inside
 * it and the count of runs completed inside it.
 */
async function openLoop(job) {
  const session = await InferenceSession.create(job.modelPath, {
    intraOpNumThreads: job.intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  });
  const elements = job.inputShape.reduce((a, b) => a * b, 1);
  const values = Float32Array.from({ length: elements }, (_, i) => Math.sin(i));
  const measure = async (startAt) => {
    const latencies = [];
    let completed = 0;
    const measureFrom = startAt + job.warmupMs;
    const end = measureFrom + job.durationMs;
    const loop = async () => {
      while (Date.now() < end) {
        const wall = Date.now();
        const t0 = performance.now();
        await session.run({ [job.inputName]: new Tensor('float32', values, job.inputShape) });
        if (wall >= measureFrom) latencies.push(performance.now() - t0);
        const done = Date.now();
        if (done >= measureFrom && done < end) completed += 1;
      }
    };
    await Promise.all(Array.from({ length: job.concurrency }, loop));
    await session.release();
    return { latencies, completed };
  };
  return { measure };
}

module.exports = { openLoop };

// On a worker thread: report ready once the session is open, measure from the start time the parent sends.
if (!isMainThread) {
  openLoop(workerData).then(({ measure }) => {
    parentPort.once('message', (startAt) => measure(startAt).then((result) => parentPort.postMessage(result)));
    parentPort.postMessage('ready');
  });
}
