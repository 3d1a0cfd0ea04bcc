// The body of a session thread (see session-runner.ts): owns one onnxruntime
// InferenceSession and runs it off the node's event loop, so the node keeps
// reading and answering requests while a long run is in progress. Plain
// CommonJS, so it loads the same under tsx, jest and plain node.
const { Buffer } = require('node:buffer');
const { closeSync, openSync, readSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const ort = require('onnxruntime-node');

/**
 * This thread's /proc/thread-self/schedstat, opened once (it names the thread that opened it) and read
 * from its start on every look: one pread a look instead of open, stat, read and close, which cost
 * about a third of a tiny model's run on a virtual machine where every system call is dear.
 * Undefined where it cannot be opened.
 */
let schedstat;
try {
  schedstat = openSync('/proc/thread-self/schedstat', 'r');
} catch {
  schedstat = undefined;
}
const schedstatBytes = Buffer.alloc(128);

/**
 * CPU time this thread has run, in ns (Linux's /proc/thread-self/schedstat); NaN where it cannot be read.
 * A run's CPU time, unlike its wall time, does not count the time other threads and processes held the cores.
 * The kernel brings the figure up to date at scheduler ticks and switches, not at every read, so a run
 * shorter than a tick may read as 0 (the batcher then goes by wall time).
 */
function threadCpuNs() {
  if (schedstat === undefined) return Number.NaN;
  try {
    const n = readSync(schedstat, schedstatBytes, 0, schedstatBytes.length, 0);
    return Number(schedstatBytes.toString('latin1', 0, n).split(' ', 1)[0]);
  } catch {
    return Number.NaN;
  }
}

/**
 * A tensor as it crosses the thread boundary: numeric data travels as a transferred typed array.
 * onnxruntime-node gives each output an ArrayBuffer of its own, which moves to the main thread
 * uncopied; data that is a view into a larger buffer (or one that cannot move) is copied once.
 */
function pack(name, tensor, transfer, copy) {
  if (tensor.type === 'string') return { name, type: 'string', dims: tensor.dims, data: tensor.data };
  const own = tensor.data;
  const whole = own.buffer instanceof ArrayBuffer && own.byteOffset === 0 && own.byteLength === own.buffer.byteLength;
  const data = whole && !copy ? own : own.slice();
  transfer.push(data.buffer);
  return { name, type: tensor.type, dims: tensor.dims, data };
}

/** Posts a run's outputs, moving their buffers; copies them if a buffer turns out not to be transferable. */
function postResult(id, outputNames, results, cpuMs) {
  for (const copy of [false, true]) {
    const transfer = [];
    const outputs = outputNames.map((name) => pack(name, results[name], transfer, copy));
    try {
      parentPort.postMessage({ kind: 'result', id, outputs, cpuMs }, transfer);
      return;
    } catch (err) {
      if (copy || !(err && err.name === 'DataCloneError')) throw err;
    }
  }
}

async function main() {
  let session;
  try {
    session = await ort.InferenceSession.create(workerData.path, workerData.options);
  } catch (err) {
    parentPort.postMessage({ kind: 'failed', message: String(err && err.message ? err.message : err) });
    return;
  }
  parentPort.on('message', async (message) => {
    if (message.kind === 'release') {
      await session.release();
      if (schedstat !== undefined) closeSync(schedstat);
      schedstat = undefined;
      parentPort.postMessage({ kind: 'released' });
      parentPort.close();
      return;
    }
    try {
      const feeds = {};
      for (const t of message.feeds) feeds[t.name] = new ort.Tensor(t.type, t.data, t.dims);
      const before = threadCpuNs();
      const results = await session.run(feeds, message.outputNames);
      const cpuMs = (threadCpuNs() - before) / 1e6;
      postResult(message.id, message.outputNames, results, Number.isFinite(cpuMs) && cpuMs >= 0 ? cpuMs : undefined);
    } catch (err) {
      parentPort.postMessage({ kind: 'error', id: message.id, message: String(err && err.message ? err.message : err) });
    }
  });
  parentPort.postMessage({ kind: 'ready' });
}

main();
