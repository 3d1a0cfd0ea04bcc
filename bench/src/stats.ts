/** Latency summary of one load run, in milliseconds. */
export interface RunResult {
  /** Requests completed inside the measured window. */
  count: number;
  errors: Record<string, number>;
  /** Requests completed inside the measured window, per second. */
  throughput: number;
  p50: number;
  p90: number;
  p99: number;
  /** Peak RSS of the load-generating process, bytes. */
  maxRss?: number;
  /** CPU time the load-generating process used over its whole life, seconds. */
  cpuSeconds?: number;
  /**
   * CPU milliseconds per completed request over the measured window, read from
   * /proc: `load` is the job itself (the load generator, or raw onnxruntime's
   * process), the others the servers it drove.
   */
  cpuMsPerRequest?: Record<string, number>;
  /** Minor page faults per request of each process over the measured window. */
  faultsPerRequest?: Record<string, number>;
}

/** The q-quantile (0..1) of sorted samples, nearest-rank. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

/**
 * Summarises a measured window of `seconds`: `completed` requests finished
 * inside it (the count throughput and CPU per request go by, since the CPU
 * time is read over the same window), and the latencies (ms) of requests
 * started inside it.
 */
export function summarise(latencies: number[], seconds: number, errors: Record<string, number> = {}, completed = latencies.length): RunResult {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    count: completed,
    errors,
    throughput: completed / seconds,
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Per process, the median over runs of a per-request figure (CPU milliseconds, page faults). */
function medianPerProcess(runs: RunResult[], figure: (r: RunResult) => Record<string, number> | undefined): Record<string, number> | undefined {
  const names = new Set(runs.flatMap((r) => Object.keys(figure(r) ?? {})));
  if (names.size === 0) return undefined;
  return Object.fromEntries([...names].map((name) => [name, median(runs.map((r) => figure(r)?.[name] ?? NaN))]));
}

/** Field-wise medians over repeated runs. */
export function medianRun(runs: RunResult[]): RunResult {
  const errors: Record<string, number> = {};
  for (const run of runs) for (const [code, n] of Object.entries(run.errors)) errors[code] = (errors[code] ?? 0) + n;
  return {
    count: median(runs.map((r) => r.count)),
    errors,
    throughput: median(runs.map((r) => r.throughput)),
    p50: median(runs.map((r) => r.p50)),
    p90: median(runs.map((r) => r.p90)),
    p99: median(runs.map((r) => r.p99)),
    maxRss: median(runs.map((r) => r.maxRss ?? NaN)),
    cpuMsPerRequest: medianPerProcess(runs, (r) => r.cpuMsPerRequest),
    faultsPerRequest: medianPerProcess(runs, (r) => r.faultsPerRequest),
  };
}

/**
 * The order in which rep `rep` runs `n` sides measured together: forward on
 * even reps, backward on odd ones (A B C, C B A, A B C, …), so no side always
 * runs first or last and the machine's drift over a group falls on every side.
 */
export function interleavedOrder(n: number, rep: number): number[] {
  const order = Array.from({ length: n }, (_, i) => i);
  return rep % 2 === 0 ? order : order.reverse();
}

/** A performance target and whether the run met it. */
export interface TargetResult {
  id: string;
  description: string;
  /** The figure judged: for a target computed rep by rep, the median of its reps. */
  measured: number;
  /** The target's figure in each rep, from runs of that rep alone, when it was computed so. */
  reps?: number[];
  /** `measured` must be ≥ (or ≤) this. */
  bound: number;
  direction: '>=' | '<=';
  met: boolean | 'not evaluated';
  note?: string;
}

export function target(id: string, description: string, measured: number, direction: '>=' | '<=', bound: number, note?: string): TargetResult {
  const met = Number.isFinite(measured) ? (direction === '>=' ? measured >= bound : measured <= bound) : 'not evaluated';
  return { id, description, measured, bound, direction, met, note };
}

/**
 * A target computed rep by rep: `figure(rep)` from the runs of that rep only
 * (sides measured together, minutes apart at most), judged by the median over
 * the reps. A ratio of two sides' medians pairs runs from different moments;
 * on a shared machine whose speed drifts by tens of percent from one minute to
 * the next, that drift lands whole on the ratio.
 */
export function repTarget(id: string, description: string, reps: number, figure: (rep: number) => number, direction: '>=' | '<=', bound: number): TargetResult {
  const values = Array.from({ length: reps }, (_, rep) => figure(rep));
  // A rep without the figure (a process's CPU not read) leaves the target unjudged rather than judged on the others.
  const measured = values.every((v) => Number.isFinite(v)) ? median(values) : NaN;
  return { ...target(id, description, measured, direction, bound), reps: values };
}

/** A target's measured figure as the report shows it: with the range of its reps when it has several. */
export function formatMeasured(t: TargetResult): string {
  if (!Number.isFinite(t.measured)) return '-';
  // A rep-by-rep target has a finite figure only when every rep has one (repTarget).
  const reps = t.reps ?? [];
  if (reps.length < 2) return t.measured.toFixed(2);
  return `${t.measured.toFixed(2)} (reps ${Math.min(...reps).toFixed(2)}–${Math.max(...reps).toFixed(2)})`;
}
