import { formatMeasured, interleavedOrder, median, medianRun, quantile, repTarget, summarise, target } from '../src/stats';

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

  it('interleaves the sides of a group so none always runs first', () => {
    expect([0, 1, 2].map((rep) => interleavedOrder(3, rep))).toEqual([
      [0, 1, 2],
      [2, 1, 0],
      [0, 1, 2],
    ]);
    expect(interleavedOrder(1, 1)).toEqual([0]);
  });

  it('judges a rep-by-rep target by the median of its reps and shows their range', () => {
    // Side A's and side B's runs drift together, rep by rep: the ratio of each rep is 2, whatever the drift.
    const a = [10, 30, 20];
    const b = [5, 15, 10];
    const t = repTarget('T9', 'x', 3, (rep) => a[rep] / b[rep], '<=', 2.5);
    expect(t).toMatchObject({ measured: 2, reps: [2, 2, 2], met: true });
    // One odd rep moves neither the verdict nor the figure, and the report shows it in the range.
    const skewed = repTarget('T9', 'x', 3, (rep) => [1.1, 3.4, 1.2][rep], '<=', 2.5);
    expect(skewed).toMatchObject({ measured: 1.2, met: true });
    expect(formatMeasured(skewed)).toBe('1.20 (reps 1.10–3.40)');
    expect(formatMeasured(target('T9', 'x', 0.456, '<=', 1))).toBe('0.46');
    // A rep without the figure leaves the target unjudged.
    expect(repTarget('T9', 'x', 3, (rep) => [1, NaN, 1][rep], '<=', 2.5).met).toBe('not evaluated');
    expect(median([3, 1, 2])).toBe(2);
  });
});
