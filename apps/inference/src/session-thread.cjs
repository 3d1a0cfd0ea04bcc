// The body of a session thread (see session-runner.ts): owns one onnxruntime
// InferenceSession and runs it off the node's event loop, so the node keeps
// reading and answering requests while a long run is in progress. Plain
// CommonJS, so it loads the same under tsx, jest and plain node.
const { parentPort, workerData } = require('node:worker_threads');
const ort = require('onnxruntime-node');

/** A tensor as it crosses the thread boundary: numeric data travels as a transferred typed array. */
function pack(name, tensor, transfer) {
  if (tensor.type === 'string') return { name, type: 'string', dims: tensor.dims, data: tensor.data };
  // onnxruntime's output may sit in memory that cannot be transferred: copy it once into a plain buffer.
  const data = tensor.data.slice();
  transfer.push(data.buffer);
  return { name, type: tensor.type, dims: tensor.dims, data };
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
      parentPort.postMessage({ kind: 'released' });
      parentPort.close();
      return;
    }
    try {
      const feeds = {};
      for (const t of message.feeds) feeds[t.name] = new ort.Tensor(t.type, t.data, t.dims);
      const results = await session.run(feeds, message.outputNames);
      const transfer = [];
      const outputs = message.outputNames.map((name) => pack(name, results[name], transfer));
      parentPort.postMessage({ kind: 'result', id: message.id, outputs }, transfer);
    } catch (err) {
      parentPort.postMessage({ kind: 'error', id: message.id, message: String(err && err.message ? err.message : err) });
    }
  });
  parentPort.postMessage({ kind: 'ready' });
}

main();
