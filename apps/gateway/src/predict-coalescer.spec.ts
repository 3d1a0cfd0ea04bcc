import { status } from '@grpc/grpc-js';
import { DataType, decodePredictResponse, encodePredictResponse, type PredictRequest, type Tensor } from '@maas/proto';
import type { CancelSignal } from '@maas/rpc';
import { decodedAnswer, encodedAnswer, PredictCoalescer, type NodeAnswer, type SendToNode } from './predict-coalescer';
import type { CallContext } from './predict-router';

const KEY = 'm:1';
const grpcError = (code: status) => Object.assign(new Error(status[code]), { code, details: status[code] });

/** A request of `rows` rows of two float32 values each, the values starting at `from`. */
function request(rows: number, from: number, extra: Partial<PredictRequest> = {}): PredictRequest {
  const values = Float32Array.from({ length: rows * 2 }, (_, i) => from + i);
  const input: Tensor = { name: 'x', dtype: DataType.DATA_TYPE_FLOAT32, shape: [rows, 2], rawData: Buffer.from(values.buffer), stringData: [] };
  return { model: 'm', version: 1, alias: '', inputs: [input], outputNames: [], sha256: '', ...extra };
}

const ctx = (signal = new AbortController().signal): CallContext => ({ deadline: Date.now() + 10_000, signal });

/** A node running an identity model: the answer's output `y` is the request's first input. */
function identityNode(behaviour: { fail?: status; dropBatchDim?: boolean; inProcess?: boolean } = {}) {
  const sent: PredictRequest[] = [];
  const signals: CancelSignal[] = [];
  let release: () => void = () => undefined;
  let hold = false;
  const send: SendToNode = async (req, c) => {
    sent.push(req);
    signals.push(c.signal);
    if (hold) await new Promise<void>((r) => (release = r));
    if (behaviour.fail !== undefined) throw grpcError(behaviour.fail);
    const x = req.inputs[0];
    const y: Tensor = { ...x, name: 'y', shape: behaviour.dropBatchDim && req.inputs[0].shape[0] > 1 ? [x.shape[0] * x.shape[1]] : x.shape };
    const response = { model: req.model, version: req.version, outputs: [y] };
    // A node in this process answers decoded, a remote one encoded.
    return behaviour.inProcess ? decodedAnswer(response, 1, 2) : encodedAnswer(encodePredictResponse(response), 1, 2);
  };
  return { send, sent, signals, holdNext: () => (hold = true), release: () => release() };
}

const floatsOf = (answer: NodeAnswer | undefined) => {
  const y = decodePredictResponse(answer!.bytes).outputs[0];
  return { shape: y.shape, values: Array.from(new Float32Array(Uint8Array.from(y.rawData).buffer)) };
};

/** Teaches the coalescer the version's answer size with one lone request. */
async function learnt(coalescer: PredictCoalescer, send: SendToNode): Promise<void> {
  await coalescer.submit(KEY, 8, request(1, 0), ctx(), send);
}

describe('PredictCoalescer', () => {
  it('sends a version\'s first request alone, its answer as the node encoded it', async () => {
    const node = identityNode();
    const coalescer = new PredictCoalescer({ maxBytes: 1 << 20 });
    const answers = await Promise.all([coalescer.submit(KEY, 8, request(1, 0), ctx(), node.send), coalescer.submit(KEY, 8, request(1, 10), ctx(), node.send)]);
    expect(node.sent).toHaveLength(2);
    expect(answers.map((a) => floatsOf(a).values)).toEqual([[0, 1], [10, 11]]);
  });

  it.each([
    ['a remote node', false],
    ['a node in this process', true],
  ])('stacks the requests of one turn into one call and gives each caller its own rows (%s)', async (_name, inProcess) => {
    const node = identityNode({ inProcess });
    const coalescer = new PredictCoalescer({ maxBytes: 1 << 20 });
    await learnt(coalescer, node.send);
    node.sent.length = 0;
    const answers = await Promise.all([request(1, 0), request(3, 100), request(2, 200)].map((r) => coalescer.submit(KEY, 8, r, ctx(), node.send)));
    expect(node.sent).toHaveLength(1);
    expect(node.sent[0].inputs[0].shape).toEqual([6, 2]);
    expect(answers.map(floatsOf)).toEqual([
      { shape: [1, 2], values: [0, 1] },
      { shape: [3, 2], values: [100, 101, 102, 103, 104, 105] },
      { shape: [2, 2], values: [200, 201, 202, 203] },
    ]);
    expect(coalescer.stats).toEqual({ stackedCalls: 1, stackedRequests: 3 });
  });

  it('sends a lone caller at once, and one that finds a group open joins it', async () => {
    const node = identityNode();
    const coalescer = new PredictCoalescer({ maxBytes: 1 << 20 });
    await learnt(coalescer, node.send);
    node.sent.length = 0;
    const lone = coalescer.submit(KEY, 8, request(1, 0), ctx(), node.send, false);
    expect(node.sent).toHaveLength(1);
    await lone;
    node.sent.length = 0;
    const answers = await Promise.all([
      coalescer.submit(KEY, 8, request(1, 0), ctx(), node.send, true),
      coalescer.submit(KEY, 8, request(1, 10), ctx(), node.send, false),
    ]);
    expect(node.sent.map((r) => r.inputs[0].shape[0])).toEqual([2]);
    expect(answers.map((a) => floatsOf(a).values)).toEqual([[0, 1], [10, 11]]);
  });

  it('never stacks past max_batch_size rows, nor requests that differ in trailing dims or outputs asked for', async () => {
    const node = identityNode();
    const coalescer = new PredictCoalescer({ maxBytes: 1 << 20 });
    await learnt(coalescer, node.send);
    node.sent.length = 0;
    const odd = request(1, 50);
    odd.inputs[0] = { ...odd.inputs[0], shape: [1, 1, 2] };
    const answers = await Promise.all(
      [request(3, 0), request(3, 10), request(3, 20), odd, request(1, 60, { outputNames: ['y'] })].map((r) => coalescer.submit(KEY, 6, r, ctx(), node.send)),
    );
    expect(node.sent.map((r) => r.inputs[0].shape[0]).sort()).toEqual([1, 1, 3, 6]);
    expect(answers.map((a) => floatsOf(a).values[0])).toEqual([0, 10, 20, 50, 60]);
  });

  it('keeps stacks under the byte budget, by inputs and by the answer size learnt', async () => {
    const node = identityNode();
    const coalescer = new PredictCoalescer({ maxBytes: 64 });
    await learnt(coalescer, node.send);
    node.sent.length = 0;
    // Rows of 8 input bytes and an answer of about 30 bytes: a stack of 64 bytes each way holds two.
    await Promise.all([0, 1, 2, 3, 4].map((i) => coalescer.submit(KEY, 32, request(1, i), ctx(), node.send)));
    expect(node.sent.length).toBeGreaterThanOrEqual(3);
    expect(Math.max(...node.sent.map((r) => r.inputs[0].shape[0]))).toBeLessThanOrEqual(2);
  });

  it('sends each member alone when the stacked call fails in a way one member may have caused', async () => {
    const coalescer = new PredictCoalescer({ maxBytes: 1 << 20 });
    await learnt(coalescer, identityNode().send);
    const failing = identityNode({ fail: status.INVALID_ARGUMENT });
    const answers = await Promise.all([request(1, 0), request(1, 10)].map((r) => coalescer.submit(KEY, 8, r, ctx(), failing.send)));
    expect(answers).toEqual([undefined, undefined]);
  });

  it('sends each member alone when the answer cannot be split by rows', async () => {
    const coalescer = new PredictCoalescer({ maxBytes: 1 << 20 });
    await learnt(coalescer, identityNode().send);
    const flat = identityNode({ dropBatchDim: true });
    const answers = await Promise.all([request(1, 0), request(1, 10)].map((r) => coalescer.submit(KEY, 8, r, ctx(), flat.send)));
    expect(answers).toEqual([undefined, undefined]);
  });

  it.each([status.UNAVAILABLE, status.DEADLINE_EXCEEDED, status.ABORTED])('fails every member with a stacked call\'s %s', async (code) => {
    const coalescer = new PredictCoalescer({ maxBytes: 1 << 20 });
    await learnt(coalescer, identityNode().send);
    const failing = identityNode({ fail: code });
    const results = await Promise.allSettled([request(1, 0), request(1, 10)].map((r) => coalescer.submit(KEY, 8, r, ctx(), failing.send)));
    expect(results.map((r) => r.status === 'rejected' && (r.reason as { code: status }).code)).toEqual([code, code]);
  });

  it('fails every member when all nodes are at capacity, and sends alone on a size limit', async () => {
    const coalescer = new PredictCoalescer({ maxBytes: 1 << 20 });
    await learnt(coalescer, identityNode().send);
    const full: SendToNode = () => Promise.reject(Object.assign(grpcError(status.RESOURCE_EXHAUSTED), { atCapacity: true }));
    const full2 = await Promise.allSettled([request(1, 0), request(1, 10)].map((r) => coalescer.submit(KEY, 8, r, ctx(), full)));
    expect(full2.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    const tooBig: SendToNode = () => Promise.reject(grpcError(status.RESOURCE_EXHAUSTED));
    await expect(Promise.all([request(1, 0), request(1, 10)].map((r) => coalescer.submit(KEY, 8, r, ctx(), tooBig)))).resolves.toEqual([undefined, undefined]);
  });

  it('lets a member that cancels leave at once, and cancels the stacked call only when every member has', async () => {
    const node = identityNode();
    const coalescer = new PredictCoalescer({ maxBytes: 1 << 20 });
    await learnt(coalescer, node.send);
    node.holdNext();
    const [a, b] = [new AbortController(), new AbortController()];
    const first = coalescer.submit(KEY, 8, request(1, 0), ctx(a.signal), node.send);
    const second = coalescer.submit(KEY, 8, request(1, 10), ctx(b.signal), node.send);
    await new Promise((r) => setImmediate(r));
    const stackedSignal = node.signals.at(-1)!;
    a.abort();
    await expect(first).rejects.toMatchObject({ code: status.CANCELLED });
    expect(stackedSignal.aborted).toBe(false);
    b.abort();
    await expect(second).rejects.toMatchObject({ code: status.CANCELLED });
    expect(stackedSignal.aborted).toBe(true);
    node.release();
  });
});
