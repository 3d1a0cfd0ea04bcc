import { OutlierDetector } from './outlier-detector';

describe('OutlierDetector', () => {
  const feed = (d: OutlierDetector, key: string, node: string, times: number[]) => times.map((ms) => d.record(key, node, ms)).pop();

  it('flags a node whose median is far above its peers on the same model version', () => {
    const d = new OutlierDetector();
    feed(d, 'm:1', 'fast', [2, 3, 2, 2, 2, 2, 3, 2]);
    expect(feed(d, 'm:1', 'slow', [160, 162, 161, 160, 161, 160, 162])).toBeUndefined(); // not a full window yet
    expect(feed(d, 'm:1', 'slow', [161])).toMatch(/median 161.0 ms .* peers 2.0 ms/);
  });

  it('ignores a single slow answer such as a cold model load', () => {
    const d = new OutlierDetector();
    feed(d, 'm:1', 'a', [2, 2, 2, 2, 2, 2, 2, 2]);
    expect(feed(d, 'm:1', 'b', [900, 2, 3, 2, 900, 2, 2, 2])).toBeUndefined();
  });

  it('compares only answers for the same model version', () => {
    const d = new OutlierDetector();
    feed(d, 'tiny:1', 'a', [1, 1, 1]);
    expect(feed(d, 'big:1', 'b', [200, 200, 200])).toBeUndefined();
  });

  it('keeps a margin for small absolute differences and can be turned off', () => {
    const d = new OutlierDetector();
    feed(d, 'm:1', 'a', [1, 1, 1, 1, 1, 1, 1, 1]);
    expect(feed(d, 'm:1', 'b', [40, 40, 40, 40, 40, 40, 40, 40])).toBeUndefined(); // 40 < 3 × 1 + 50: scheduling jitter
    const off = new OutlierDetector({ factor: 0 });
    feed(off, 'm:1', 'a', [1, 1, 1]);
    expect(feed(off, 'm:1', 'b', [500, 500, 500])).toBeUndefined();
  });

  it('starts a forgotten node afresh', () => {
    const d = new OutlierDetector();
    feed(d, 'm:1', 'a', [1, 1, 1, 1, 1, 1, 1, 1]);
    feed(d, 'm:1', 'b', [100, 100, 100, 100, 100, 100, 100]);
    d.forget('b');
    expect(d.record('m:1', 'b', 100)).toBeUndefined();
  });

  it('does not eject busy homes for a peer that only sees their overflow', () => {
    const d = new OutlierDetector();
    feed(d, 'm:1', 'overflow', [80, 85, 80, 82, 81, 80, 83, 80]);
    feed(d, 'm:1', 'home-a', [560, 570, 580, 575, 570, 565, 572, 571]);
    // home-b against the median of its peers (80 and 571), not against the overflow node alone.
    expect(feed(d, 'm:1', 'home-b', [600, 610, 590, 605, 600, 598, 602, 600])).toBeUndefined();
  });
});
