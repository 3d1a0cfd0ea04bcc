import { ModelStatistics } from './model-statistics';

describe('ModelStatistics', () => {
  it('counts rows, requests, failures and the node-reported queue and run per version', () => {
    const stats = new ModelStatistics();
    const ok = { model: 'm', version: 1, ok: true, totalMs: 10, queueMs: 2, runMs: 5, rows: 4 };
    stats.record(ok, 1000);
    stats.record({ ...ok, rows: 1, totalMs: 20 }, 2000);
    stats.record({ ...ok, ok: false, totalMs: 3 }, 3000);
    stats.record({ ...ok, version: 2 }, 4000);
    const [v1, v2] = stats.query('m', 0);
    expect(v1).toMatchObject({ version: 1, lastInference: 3000, inferenceCount: 5, executionCount: 2 });
    expect(v1.success).toEqual({ count: 2, ns: 30e6 });
    expect(v1.fail).toEqual({ count: 1, ns: 3e6 });
    expect(v1.queue).toEqual({ count: 2, ns: 4e6 });
    expect(v1.computeInfer).toEqual({ count: 2, ns: 10e6 });
    expect(v2.version).toBe(2);
    expect(stats.query('m', 2)).toHaveLength(1);
    expect(stats.query('', 0)).toHaveLength(2);
    expect(stats.query('other', 0)).toEqual([]);
  });
});
