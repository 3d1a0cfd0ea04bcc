import { BatchSizer } from './batch-sizer';

/** Feeds `runs` runs of `rows` rows at `msPerRow` each. */
function feed(sizer: BatchSizer, rows: number, msPerRow: number, runs = 3): void {
  for (let i = 0; i < runs; i++) sizer.record(rows, rows * msPerRow);
}

describe('BatchSizer', () => {
  it('size classes are powers of two up to max_batch_size, and max_batch_size itself', () => {
    const sizer = new BatchSizer({ maxRows: 6, exploreEvery: 2 });
    const limits = new Set(Array.from({ length: 40 }, () => sizer.nextLimit()));
    expect([...limits].sort((a, b) => a - b)).toEqual([1, 2, 4, 6]);
  });

  it('lets batches fill to max_batch_size until a larger size has been measured slower', () => {
    const sizer = new BatchSizer({ maxRows: 8 });
    expect(sizer.cap).toBe(8);
    // Only single-row runs so far (light load): the larger classes are unknown, so still allowed.
    feed(sizer, 1, 10);
    expect(sizer.cap).toBe(8);
    // A tiny model: per row, the larger the batch the cheaper.
    feed(sizer, 2, 6);
    feed(sizer, 4, 3);
    feed(sizer, 8, 1.5);
    expect(sizer.cap).toBe(8);
  });

  it('caps batches at the size that runs fastest per row, even when the curve is not monotonic', () => {
    // Pairs dearer than fours, singles cheapest of all.
    const sizer = new BatchSizer({ maxRows: 4 });
    feed(sizer, 4, 32.6);
    expect(sizer.cap).toBe(4);
    feed(sizer, 2, 38.8);
    expect(sizer.cap).toBe(4);
    feed(sizer, 1, 25.8);
    expect(sizer.cap).toBe(1);
  });

  it('prefers the larger of two sizes within the tolerance, and stops below the first one measured slower', () => {
    const sizer = new BatchSizer({ maxRows: 16, tolerance: 0.05 });
    feed(sizer, 1, 10);
    feed(sizer, 2, 10.3);
    feed(sizer, 4, 12);
    expect(sizer.cap).toBe(2);
  });

  it('explores every other class in turn, one run in exploreEvery, and moves the cap when costs change', () => {
    const sizer = new BatchSizer({ maxRows: 4, exploreEvery: 4 });
    feed(sizer, 4, 30);
    feed(sizer, 2, 40);
    feed(sizer, 1, 20);
    expect(sizer.cap).toBe(1);
    const limits = Array.from({ length: 8 }, () => sizer.nextLimit());
    expect(limits).toEqual([1, 1, 1, 2, 1, 1, 1, 4]);
    // Fours got cheaper (another version left the cores, say): the explored runs show it and the cap follows.
    feed(sizer, 4, 10, 12);
    expect(sizer.cap).toBe(4);
  });

  it('explores a class that stays slower ever less often, down to one of its turns in maxExploreBackoff, and at every turn once it is fast enough', () => {
    const sizer = new BatchSizer({ maxRows: 2, exploreEvery: 2, maxExploreBackoff: 4 });
    feed(sizer, 2, 30);
    feed(sizer, 1, 20);
    expect(sizer.cap).toBe(1);
    // Pairs stay dearer per row than singles: each exploring turn (every 2nd run) that lets a pair through.
    const explored = (turns: number, pairMsPerRow: number) => {
      const hits: number[] = [];
      for (let turn = 1; turn <= turns; turn++) {
        sizer.nextLimit();
        const limit = sizer.nextLimit();
        if (limit === 2) hits.push(turn);
        sizer.record(limit, limit * (limit === 2 ? pairMsPerRow : 20));
      }
      return hits;
    };
    expect(explored(20, 30)).toEqual([1, 2, 4, 8, 12, 16, 20]);
    // Pairs got as cheap as singles: the next exploration shows it, and from then on every turn explores them
    // until their average has caught up and the cap moves to pairs (then singles are the class explored).
    expect(explored(16, 20)).toEqual([4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    expect(sizer.cap).toBe(2);
  });

  it('ignores runs it cannot learn from', () => {
    const sizer = new BatchSizer({ maxRows: 4 });
    sizer.record(0, 5);
    sizer.record(2, Number.NaN);
    expect(sizer.measured()).toEqual([]);
    expect(new BatchSizer({ maxRows: 1 }).nextLimit()).toBe(1);
  });
});
