/** Options of {@link BatchSizer}. */
export interface BatchSizerOptions {
  /** The version's max_batch_size: batches never exceed it. */
  maxRows: number;
  /** Runs of a size before its time per row counts. @default 3 */
  minSamples?: number;
  /** How much slower per row a larger size may be and still be allowed, as a fraction. @default 0.05 */
  tolerance?: number;
  /** One run in this many is let (or held) to another size class than the cap's, each class in turn. @default 16 */
  exploreEvery?: number;
  /**
   * A class measured slower than the cap allows is explored at one of its turns in 2, then 4, … up to this
   * many, so a class that stays slow costs next to nothing; measured fast enough again, at every turn. @default 32
   */
  maxExploreBackoff?: number;
}

interface SizeStats {
  /** Moving average of a run's time per row at this size, in ms. */
  msPerRow: number;
  runs: number;
  /** This class is explored at one of its exploring turns in this many ({@link BatchSizerOptions.maxExploreBackoff}). */
  exploreInterval: number;
  /** Its exploring turns still to pass over before the next exploration. */
  exploreSkips: number;
}

/**
 * Learns how many rows a version's runs should carry. A larger batch is not
 * always cheaper per row: a tiny MLP runs 64 rows in little more than the time
 * of one, but PP-OCRv4 rec on one intra-op thread costs 27.3 ms of CPU per row
 * alone, 31.6 in pairs, 33.8 in fours and 35.8 in eights (raw onnxruntime,
 * one session running alone on this project's 2-core machine), so stacking its requests up to max_batch_size 4 made the
 * node slower than not batching. The sizer times every run (its session
 * thread's CPU time where that can be read: wall time also counts whatever
 * else held the cores meanwhile, which blurred a 16 % difference between
 * singles and pairs beyond telling on 2 shared cores) by size class
 * (powers of two up to max_batch_size, and max_batch_size itself) and caps
 * batches at the size with the lowest time per row, or beyond it as far as no
 * larger class has been measured slower (classes never reached under light
 * load stay allowed). One run in sixteen is let (or held) to another class,
 * each in turn, so every class keeps being measured and a cap learned under
 * other conditions moves when they change. Exploring costs what the explored
 * class costs more per row: with PP-OCRv4 rec's pairs and fours measured 33 %
 * and 42 % dearer per row than singles (2-core Xeon), exploring every class at
 * each of its turns made batching 8 % slower than no batching. So a class
 * measured slower than the cap allows is explored ever less often (at one of
 * its turns in 2, 4, … up to 32, one run in about a thousand), and at every
 * turn again as soon as one of its runs measures fast enough.
 */
export class BatchSizer {
  private readonly sizes: number[];
  private readonly stats: SizeStats[];
  private readonly minSamples: number;
  private readonly tolerance: number;
  private readonly exploreEvery: number;
  private readonly maxExploreBackoff: number;
  private turns = 0;
  private capIndex: number;
  /** The slowest time per row a class may take and be allowed (see {@link chooseCap}); Infinity until one class is known. */
  private bar = Infinity;

  constructor(options: BatchSizerOptions) {
    const max = Math.max(1, Math.floor(options.maxRows));
    const sizes: number[] = [];
    for (let s = 1; s < max; s *= 2) sizes.push(s);
    sizes.push(max);
    this.sizes = sizes;
    this.stats = sizes.map(() => ({ msPerRow: 0, runs: 0, exploreInterval: 1, exploreSkips: 0 }));
    this.minSamples = options.minSamples ?? 3;
    this.tolerance = options.tolerance ?? 0.05;
    this.exploreEvery = Math.max(2, options.exploreEvery ?? 16);
    this.maxExploreBackoff = Math.max(1, options.maxExploreBackoff ?? 32);
    this.capIndex = sizes.length - 1;
  }

  /** Most rows the current cap lets a batch carry. */
  get cap(): number {
    return this.sizes[this.capIndex];
  }

  /**
   * Most rows the next run may carry: the cap, except one run in every `exploreEvery`, which is let (or held)
   * to another size class, taken in turn, so every class keeps being measured; a class measured slower than
   * the cap allows passes over some of its turns (see {@link BatchSizerOptions.maxExploreBackoff}).
   */
  nextLimit(): number {
    const turn = this.turns++;
    if (this.sizes.length === 1 || turn % this.exploreEvery !== this.exploreEvery - 1) return this.cap;
    const others = this.sizes.length - 1;
    const pick = Math.floor(turn / this.exploreEvery) % others;
    const index = pick < this.capIndex ? pick : pick + 1;
    const explored = this.stats[index];
    if (explored.exploreSkips > 0) {
      explored.exploreSkips -= 1;
      return this.cap;
    }
    explored.exploreSkips = explored.exploreInterval - 1;
    return this.sizes[index];
  }

  /** Records a run of `rows` rows that took `ms`, and moves the cap by what is now known. */
  record(rows: number, ms: number): void {
    if (!(rows > 0) || !(ms >= 0)) return;
    const index = this.classOf(rows);
    const stats = this.stats[index];
    const perRow = ms / rows;
    stats.msPerRow = stats.runs === 0 ? perRow : 0.8 * stats.msPerRow + 0.2 * perRow;
    stats.runs += 1;
    this.capIndex = this.chooseCap();
    if (index === this.capIndex) return;
    // Measured slower than the cap allows, this run too: explored half as often as before. A run fast
    // enough (conditions changed, say) brings it back to every turn while its average catches up.
    const slower = stats.runs >= this.minSamples && stats.msPerRow > this.bar && perRow > this.bar;
    stats.exploreInterval = slower ? Math.min(this.maxExploreBackoff, stats.exploreInterval * 2) : 1;
    if (!slower) stats.exploreSkips = 0;
  }

  /** Each measured class's time per row in ms, by its size (for metrics and tests). */
  measured(): Array<{ rows: number; msPerRow: number; runs: number }> {
    return this.sizes.flatMap((rows, i) => (this.stats[i].runs > 0 ? [{ rows, msPerRow: this.stats[i].msPerRow, runs: this.stats[i].runs }] : []));
  }

  /** The largest class whose size is at most `rows`. */
  private classOf(rows: number): number {
    let i = 0;
    while (i + 1 < this.sizes.length && this.sizes[i + 1] <= rows) i += 1;
    return i;
  }

  private chooseCap(): number {
    const known = (i: number) => this.stats[i].runs >= this.minSamples;
    let fastest = Infinity;
    for (let i = 0; i < this.sizes.length; i++) if (known(i)) fastest = Math.min(fastest, this.stats[i].msPerRow);
    this.bar = fastest * (1 + this.tolerance);
    if (fastest === Infinity) return this.sizes.length - 1;
    // The largest measured class within the tolerance of the fastest (fewer runs for the same rows), then up
    // through every class not measured slower than that.
    const { bar } = this;
    let cap = 0;
    for (let i = 0; i < this.sizes.length; i++) if (known(i) && this.stats[i].msPerRow <= bar) cap = i;
    while (cap + 1 < this.sizes.length && (!known(cap + 1) || this.stats[cap + 1].msPerRow <= bar)) cap += 1;
    return cap;
  }
}
