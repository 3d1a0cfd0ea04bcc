/** Options of {@link OutlierDetector}. */
export interface OutlierOptions {
  /** A node is an outlier when its median latency exceeds `factor` × its peers' (the median of their medians) plus `minExtraMs`. 0 turns detection off. @default 3 */
  factor?: number;
  /** Absolute margin on top of the factor, so millisecond jitter on tiny models never ejects. @default 50 */
  minExtraMs?: number;
  /** Recent answers kept per node and model version. @default 8 */
  window?: number;
  /** Answers a node (and a peer) needs before it can be judged: a full window, so the slow first answers of a load or one burst do not eject. @default 8 */
  minSamples?: number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Latency-based outlier detection. Answer times are kept per model version
 * and node, so nodes are only ever compared on the same work; the median of
 * the last few answers ignores one-off slow calls such as the first request
 * after a model load.
 */
export class OutlierDetector {
  private readonly samples = new Map<string, Map<string, number[]>>();
  private readonly factor: number;
  private readonly minExtraMs: number;
  private readonly window: number;
  private readonly minSamples: number;

  constructor(options: OutlierOptions = {}) {
    this.factor = options.factor ?? 3;
    this.minExtraMs = options.minExtraMs ?? 50;
    this.window = options.window ?? 8;
    this.minSamples = options.minSamples ?? 8;
  }

  /**
   * Records how long `node` took to answer a request for `key` (model:version)
   * and returns the reason it is an outlier now, or undefined.
   */
  record(key: string, node: string, ms: number): string | undefined {
    if (this.factor <= 0) return undefined;
    let byNode = this.samples.get(key);
    if (!byNode) {
      if (this.samples.size >= 4096) this.samples.clear();
      this.samples.set(key, (byNode = new Map()));
    }
    let recent = byNode.get(node);
    if (!recent) byNode.set(node, (recent = []));
    recent.push(ms);
    if (recent.length > this.window) recent.shift();
    if (recent.length < this.minSamples) return undefined;
    // Against the typical peer, not the best: under overload the homes queue while a node that only
    // sees the overflow answers fast, and ejecting the homes for it would pile everything onto it.
    const peers: number[] = [];
    for (const [peer, times] of byNode) if (peer !== node && times.length >= this.minSamples) peers.push(median(times));
    if (peers.length === 0) return undefined;
    const typical = median(peers);
    const own = median(recent);
    const limit = this.factor * typical + this.minExtraMs;
    return own > limit ? `median ${own.toFixed(1)} ms over the last ${recent.length} answers for ${key}; peers ${typical.toFixed(1)} ms (limit ${limit.toFixed(1)} ms)` : undefined;
  }

  /** Forgets a node's answers (it was ejected: it starts afresh when it is back). */
  forget(node: string): void {
    for (const byNode of this.samples.values()) byNode.delete(node);
  }
}
