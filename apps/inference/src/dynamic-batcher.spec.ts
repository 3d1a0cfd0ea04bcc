import { DataType, type Tensor } from '@maas/proto';
import { ResourceExhaustedError } from '@maas/rpc';
import { waitFor } from '@maas/testing';
import { DynamicBatcher, type BatchEvent } from './dynamic-batcher';

const row = (): Tensor[] => [{ name: 'x', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, 1], rawData: Buffer.alloc(4), stringData: [] }];

describe('DynamicBatcher admission', () => {
  it('refuses at once, for another node to take, a request the queue cannot reach before its deadline', async () => {
    // One run at a time, 40 ms each.
    const batcher = new DynamicBatcher((inputs) => new Promise((resolve) => setTimeout(() => resolve({ outputs: inputs }), 40)), { batching: false, maxBatchSize: 1, maxQueueDelayMicros: 0, maxQueueSize: 100, concurrency: 1 });
    await batcher.submit(row(), ['x']); // learns the run time
    const queued = Array.from({ length: 4 }, () => batcher.submit(row(), ['x'], { deadline: Date.now() + 60_000 }));
    expect(batcher.estimateFinishMs(1)).toBeGreaterThan(150); // 5 runs of ~40 ms ahead of a new one
    const refused = batcher.submit(row(), ['x'], { deadline: Date.now() + 100 });
    await expect(refused).rejects.toBeInstanceOf(ResourceExhaustedError);
    await expect(refused).rejects.toMatchObject({ retryElsewhere: true, message: expect.stringMatching(/queue would take about \d+ ms to reach this request, beyond its deadline in \d+ ms/) });
    // One that can wait is taken, and every admitted request is answered.
    await expect(Promise.all([...queued, batcher.submit(row(), ['x'], { deadline: Date.now() + 60_000 })])).resolves.toHaveLength(5);
  });
});

describe('DynamicBatcher queue wait', () => {
  it('tells each request, as its run begins, how long it waited behind the runs ahead of it', async () => {
    const batcher = new DynamicBatcher((inputs) => new Promise((resolve) => setTimeout(() => resolve({ outputs: inputs }), 30)), { batching: false, maxBatchSize: 1, maxQueueDelayMicros: 0, maxQueueSize: 100, concurrency: 1 });
    const waits: number[] = [];
    await Promise.all(Array.from({ length: 3 }, () => batcher.submit(row(), ['x'], { onRun: (ms) => waits.push(ms) })));
    expect(waits).toHaveLength(3);
    // The first runs at once; the third waits for two runs of ~30 ms.
    expect(waits[0]).toBeLessThan(15);
    expect(waits[2]).toBeGreaterThanOrEqual(50);
  });
});

describe('DynamicBatcher adaptive batch size', () => {
  // A model that runs slower per row in batches: 2 ms of CPU alone, 5 ms per row stacked, as its session reports
  // (each run lasts long enough, 12 ms of wall time, for the batcher to go by that figure).
  const slowerStacked = (sizes: number[]) => (inputs: Tensor[]) => {
    const rows = inputs[0].shape[0];
    sizes.push(rows);
    return new Promise<{ outputs: Tensor[]; cpuMs: number }>((resolve) => setTimeout(() => resolve({ outputs: inputs, cpuMs: rows === 1 ? 2 : rows * 5 }), 12));
  };
  const options = { batching: true, maxBatchSize: 4, maxQueueDelayMicros: 0, maxQueueSize: 1000, concurrency: 1 };

  it('stops stacking requests of a version that runs slower per row in batches', async () => {
    const sizes: number[] = [];
    const batcher = new DynamicBatcher(slowerStacked(sizes), { ...options, adaptiveSize: true });
    for (let i = 0; i < 3; i++) await batcher.submit(row(), ['x']); // alone, under light load
    await Promise.all(Array.from({ length: 40 }, () => batcher.submit(row(), ['x'])));
    // Fours and pairs are each measured, found slower per row, and dropped: the rest of the burst runs one by one.
    expect(sizes.slice(3, 6)).toEqual([1, 4, 4]);
    expect(batcher.batchLimit).toBe(1);
    expect(sizes.slice(-10)).toEqual(Array(10).fill(1));
  });

  it('fills batches to max_batch_size when not adaptive', async () => {
    const sizes: number[] = [];
    const events: BatchEvent[] = [];
    const batcher = new DynamicBatcher(slowerStacked(sizes), options, (event) => events.push(event));
    await Promise.all(Array.from({ length: 41 }, () => batcher.submit(row(), ['x'])));
    expect(sizes).toEqual([1, ...Array(10).fill(4)]);
    expect(batcher.batchLimit).toBe(4);
    // Each run's event carries the CPU time its session reported, for maas_inference_run_cpu_seconds_total.
    // Events are told once the answers have been written (a turn after them), not before they leave.
    await waitFor(() => events.length === 11);
    expect(events.map((e) => [e.rows, e.cpuSeconds])).toEqual([[1, 0.002], ...Array(10).fill([4, 0.02])]);
  });

  it('leaves a run\'s CPU time out of its event when the session did not measure it', async () => {
    const events: BatchEvent[] = [];
    const batcher = new DynamicBatcher(async (inputs) => ({ outputs: inputs }), options, (event) => events.push(event));
    await batcher.submit(row(), ['x']);
    expect(events).toHaveLength(0);
    await waitFor(() => events.length === 1);
    expect(events[0].cpuSeconds).toBeUndefined();
  });
});
