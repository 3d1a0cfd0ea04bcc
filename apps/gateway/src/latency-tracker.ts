/** Options of {@link LatencyTracker}. */
export interface LatencyTrackerOptions {
  /** Recent answer times kept per model version. @default 128 */
  window?: number;
  /** Answers a version needs before its percentile is trusted. @default 16 */
  minSamples?: number;
  /** Percentile after which a call counts as late. @default 0.95 */
  percentile?: number;
  /** Late is never sooner than this, so jitter on tiny models never hedges. @default 25 */
  floorMs?: number;
  /** Late before a version has enough answers to know better. @default 1000 */
  initialMs?: number;
}

/**
 * Observed Predict latency per model version, across nodes: tells when a call
 * has taken long enough that a copy of it should go to another node
 * ("The Tail at Scale": hedge after a high percentile).
 */
export class LatencyTracker {
  private readonly samples = new Map<string, { times: Float64Array; next: number; count: number; lateMs: number; stale: number }>();
  private readonly window: number;
  private readonly minSamples: number;
  private readonly percentile: number;
  private readonly floorMs: number;
  private readonly initialMs: number;

  constructor(options: LatencyTrackerOptions = {}) {
    this.window = options.window ?? 128;
    this.minSamples = options.minSamples ?? 16;
    this.percentile = options.percentile ?? 0.95;
    this.floorMs = options.floorMs ?? 25;
    this.initialMs = options.initialMs ?? 1000;
  }

  record(key: string, ms: number): void {
    let entry = this.samples.get(key);
    if (!entry) {
      if (this.samples.size >= 4096) this.samples.clear();
      entry = { times: new Float64Array(this.window), next: 0, count: 0, lateMs: this.initialMs, stale: this.window };
      this.samples.set(key, entry);
    }
    entry.times[entry.next] = ms;
    entry.next = (entry.next + 1) % this.window;
    entry.count = Math.min(entry.count + 1, this.window);
    // The percentile is recomputed every eighth answer, not on every one.
    entry.stale += 1;
    if (entry.count >= this.minSamples && entry.stale >= 8) {
      entry.stale = 0;
      const sorted = Array.from(entry.times.subarray(0, entry.count)).sort((a, b) => a - b);
      entry.lateMs = Math.max(this.floorMs, sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * this.percentile))]);
    }
  }

  /** How long a call of this version may take before it counts as late. */
  lateAfterMs(key: string): number {
    return this.samples.get(key)?.lateMs ?? this.initialMs;
  }
}
