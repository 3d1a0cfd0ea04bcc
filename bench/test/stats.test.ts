import { median, medianRun, quantile, summarise, target } from '../src/stats';

describe('benchmark statistics', () => {
  it('takes nearest-rank quantiles', () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(quantile(sorted, 0.5)).toBe(50);
    expect(quantile(sorted, 0.99)).toBe(99);
    expect(quantile([7], 0.99)).toBe(7);
    expect(quantile([], 0.5)).toBeNaN();
  });

  it('summarises latencies into throughput and percentiles', () => {
    const result = summarise([3, 1, 2, 4], 2, { UNAVAILABLE: 1 });
    expect(result).toMatchObject({ count: 4, throughput: 2, p50: 2, p99: 4, errors: { UNAVAILABLE: 1 } });
  });

  it('takes medians field by field over repeated runs', () => {
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    const runs = [summarise([1, 2, 3], 1), summarise([10, 20, 30], 1), summarise([2, 3, 4], 1)];
    expect(medianRun(runs)).toMatchObject({ p50: 3, throughput: 3 });
    // Per-process figures too, each process on its own: CPU ms and page faults per request.
    const measured = runs.map((r, i) => ({ ...r, cpuMsPerRequest: { gateway: [0.5, 0.9, 0.7][i] }, faultsPerRequest: { gateway: [40, 10, 25][i], node: [1, 2, 3][i] } }));
    expect(medianRun(measured)).toMatchObject({ cpuMsPerRequest: { gateway: 0.7 }, faultsPerRequest: { gateway: 25, node: 2 } });
  });

  it('judges targets in both directions and never passes a missing figure', () => {
    expect(target('P1', 'x', 0.95, '>=', 0.9).met).toBe(true);
    expect(target('P2', 'x', 2.6, '<=', 2.5).met).toBe(false);
    expect(target('P4', 'x', NaN, '<=', 1.5).met).toBe('not evaluated');
  });
});
