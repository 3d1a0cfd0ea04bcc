import type { ModelVersion } from '@maas/proto';

/**
 * What one session instance costs beyond its weights: the onnxruntime session
 * and its thread pool, a worker thread where the version runs on one, and the
 * allocator's slack. Measured on this project's node (2 cores, one intra-op
 * thread): PP-OCRv4 cls (0.55 MiB artifact) grows RSS by 17–19 MiB per instance.
 */
export const SESSION_OVERHEAD_BYTES = 16 * 1024 * 1024;

/**
 * RSS per artifact byte per instance once onnxruntime has optimised the graph
 * (initializers copied, prepacked kernels): PP-OCRv4 rec (10.3 MiB) grows RSS
 * by 47–63 MiB per instance, about 4 × its size above the session overhead.
 */
export const WEIGHT_FACTOR = 4;

/** The cost of a version before it is loaded: per instance, the session overhead plus its weights as onnxruntime holds them. */
export function predictCost(version: Pick<ModelVersion, 'sizeBytes' | 'runtime'>): number {
  const instances = Math.max(1, version.runtime?.instanceCount ?? 1);
  return instances * (SESSION_OVERHEAD_BYTES + WEIGHT_FACTOR * Number(version.sizeBytes));
}

/**
 * Reads how much the process's resident memory grew above its high-water
 * mark. A load's cost is the larger of {@link predictCost} and the growth its
 * load caused; every later growth is added to the version whose run just
 * ended (onnxruntime's arena grows with the largest input a version has seen,
 * which no artifact size predicts: PP-OCRv4 det grows by about 150 MiB on its
 * first 640×640 image). Summed over loaded versions, the figures track the
 * RSS growth of the node, which is what the memory budget is about.
 */
export class RssMeter {
  private highWater: number;
  private lastRead = 0;

  /**
   * @param rss reads resident bytes. @default process.memoryUsage.rss
   * @param minIntervalMs at most one read per this many ms on the run path, where reads are per batch. @default 25
   */
  constructor(
    private readonly rss: () => number = () => process.memoryUsage.rss(),
    private readonly minIntervalMs = 25,
  ) {
    this.highWater = rss();
  }

  /** Growth above the high-water mark since the last call (0 when none); raises the mark. */
  growth(): number {
    this.lastRead = Date.now();
    const now = this.rss();
    if (now <= this.highWater) return 0;
    const grown = now - this.highWater;
    this.highWater = now;
    return grown;
  }

  /** {@link growth}, but reading RSS at most once per interval (for the per-batch path). */
  growthThrottled(): number {
    return Date.now() - this.lastRead < this.minIntervalMs ? 0 : this.growth();
  }

  /** After an unload, the mark comes down to what is resident now, so memory taken again counts again. */
  rebase(): void {
    this.highWater = Math.min(this.highWater, this.rss());
  }
}
