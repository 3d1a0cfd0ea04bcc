import { Metadata, status } from '@grpc/grpc-js';
import { decodePredictResponse, encodePredictResponse, type PredictRequest } from '@maas/proto';
import { Cancellation } from '@maas/rpc';
import { mlpModel, rejectionOf, seededFloats } from '@maas/testing';
import { floatsOf, floatTensor, startNodeFixture, type NodeFixture } from './node-fixture';

/** The error an in-process Predict rejected with, as a gRPC client would see it. */
const failure = (p: Promise<unknown>) => rejectionOf<{ code: number; details: string; metadata: unknown }>(p);

const request = (model: string, version: number, values: ArrayLike<number>, rows = 1, extra: Partial<PredictRequest> = {}): PredictRequest => ({
  model,
  version,
  alias: '',
  inputs: [floatTensor('input', [rows, 4], values)],
  outputNames: [],
  sha256: '',
  ...extra,
});

describe('a node called in-process (a gateway with its node embedded)', () => {
  let f: NodeFixture;
  afterEach(() => f.stop());

  it('answers what it answers over the wire, with the queue and run figures', async () => {
    f = await startNodeFixture();
    const version = await f.push('mlp', mlpModel({ seed: 4 }));
    const values = seededFloats(3 * 4, 9);
    const wire = await f.predict('mlp', version, [floatTensor('input', [3, 4], values)]);
    const local = await f.node.predictInProcess(request('mlp', version, values, 3), { deadline: Date.now() + 5000, signal: new Cancellation() });
    expect(local.response).toMatchObject({ model: 'mlp', version });
    expect(floatsOf(local.response.outputs[0])).toEqual(floatsOf(wire.outputs[0]));
    // What the gateway sends on is the node's encoding of it, as over the wire.
    expect(decodePredictResponse(encodePredictResponse(local.response))).toEqual(decodePredictResponse(encodePredictResponse(wire)));
    expect(local.queueMs).toBeGreaterThanOrEqual(0);
    expect(local.runMs).toBeGreaterThanOrEqual(0);
  });

  it('rejects bad input and a stale artifact as a gRPC client would see them', async () => {
    f = await startNodeFixture();
    const version = await f.push('mlp', mlpModel({ seed: 4 }));
    const bad = await failure(f.node.predictInProcess(request('mlp', version, [1, 2, 3], 1), { deadline: Infinity, signal: new Cancellation() }));
    expect(bad).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('input') });
    expect(bad.metadata).toBeInstanceOf(Metadata);
    const stale = await failure(f.node.predictInProcess(request('mlp', version, seededFloats(4, 1), 1, { sha256: 'a'.repeat(64) }), { deadline: Infinity, signal: new Cancellation() }));
    expect(stale.code).toBe(status.ABORTED);
  });

  it('ends at the deadline and on cancellation, and the queued work is dropped', async () => {
    f = await startNodeFixture();
    // Requests wait up to 3 s in the queue for a batch to fill: long enough to be cut short.
    const version = await f.push('mlp', mlpModel({ seed: 4 }), { maxBatchSize: 64, maxQueueDelayMicros: 3_000_000 });
    await f.predict('mlp', version, [floatTensor('input', [64, 4], seededFloats(64 * 4, 2))]); // loaded, and a full batch runs at once
    let started = Date.now();
    const late = await failure(f.node.predictInProcess(request('mlp', version, seededFloats(4, 3)), { deadline: Date.now() + 200, signal: new Cancellation() }));
    expect(late.code).toBe(status.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(2000);
    const cancel = new Cancellation();
    started = Date.now();
    setTimeout(() => cancel.abort(), 100);
    const dropped = await failure(f.node.predictInProcess(request('mlp', version, seededFloats(4, 4)), { deadline: Date.now() + 10_000, signal: cancel }));
    expect(dropped.code).toBe(status.CANCELLED);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(f.node.manager.find('mlp', version)?.batcher.queueDepth).toBe(0);
  });
});
