import type { Tensor } from '@maas/proto';
import { afterWrites, CancelledError, DeadlineExceededError, ResourceExhaustedError, type CancelSignal } from '@maas/rpc';
import { batchKey, concatInputs, rowsOf, splitOutputs } from '@maas/tensor';
import { BatchSizer } from './batch-sizer';

/** Runs one (possibly stacked) request against a session: its outputs, and its CPU ms where the session measured it. */
export type BatchRunner = (inputs: Tensor[], outputNames: string[]) => Promise<{ outputs: Tensor[]; cpuMs?: number }>;

/** Runs at least this long (wall) are measured by their CPU time where the session gives it; see session-thread.cjs. */
const CPU_TIMED_MIN_MS = 10;

/** Options of {@link DynamicBatcher}. */
export interface BatcherOptions {
  /** Stack requests at all (the model must have dynamic first dims). */
  batching: boolean;
  /** Most rows per run. @default 32 */
  maxBatchSize: number;
  /** Longest a request waits for company, in microseconds. @default 2000 */
  maxQueueDelayMicros: number;
  /** Most requests waiting; beyond it RESOURCE_EXHAUSTED. @default 1024 */
  maxQueueSize: number;
  /** Runs in parallel on the session. @default 1 */
  concurrency: number;
  /** Cap batches at the size measured fastest per row, up to maxBatchSize (see {@link BatchSizer}). @default false */
  adaptiveSize?: boolean;
}

/** How a request is submitted: its cancellation, deadline (epoch ms), and who hears when it starts running. */
export interface SubmitOptions {
  signal?: CancelSignal;
  deadline?: number;
  /** Called as the request's run begins, with how long it waited in the queue, in ms. */
  onRun?: (queueMs: number) => void;
}

/** What one run looked like, for metrics and tests. */
export interface BatchEvent {
  requests: number;
  rows: number;
  /** Seconds the oldest request of the batch waited in the queue. */
  queueSeconds: number;
  runSeconds: number;
  /** CPU seconds the session's thread spent on the run, where it measured them (session threads on Linux). */
  cpuSeconds?: number;
}

interface Pending {
  inputs: Tensor[];
  outputNames: string[];
  rows: number;
  enqueued: number;
  deadline: number;
  signal?: CancelSignal;
  onRun?: (queueMs: number) => void;
  resolve(outputs: Tensor[]): void;
  reject(err: unknown): void;
}

interface Group {
  requests: Pending[];
  rows: number;
  timer?: NodeJS.Timeout;
  due: boolean;
}

/**
 * Dynamic batching for one loaded model version. Requests that could share a
 * run (same output names, same non-batch dims) queue in a group until it has
 * `maxBatchSize` rows or its oldest request has waited `maxQueueDelayMicros`;
 * the group then runs as one stacked request and the outputs are split back.
 * Requests cancelled or past their deadline are dropped before they run.
 */
export class DynamicBatcher {
  private readonly groups = new Map<string, Group>();
  private queued = 0;
  /** Rows waiting, and rows in the runs in progress. */
  private queuedRows = 0;
  private runningRows = 0;
  private running = 0;
  /** Observed run time per row, in ms (moving average); 0 until the first run. */
  private msPerRow = 0;
  private closed = false;
  /** Learns the batch size that runs fastest per row, when adaptive. */
  readonly sizer?: BatchSizer;

  constructor(
    private readonly run: BatchRunner,
    private readonly options: BatcherOptions,
    private readonly onBatch: (event: BatchEvent) => void = () => undefined,
  ) {
    if (options.batching && options.adaptiveSize && options.maxBatchSize > 1) this.sizer = new BatchSizer({ maxRows: options.maxBatchSize });
  }

  /** Most rows a batch carries now: max_batch_size, or the learned cap under it. */
  get batchLimit(): number {
    return this.sizer?.cap ?? this.options.maxBatchSize;
  }

  /** Requests waiting to run. */
  get queueDepth(): number {
    return this.queued;
  }

  /** Runs in progress. */
  get inFlight(): number {
    return this.running;
  }

  /**
   * How long until a new request of `rows` rows would have been answered:
   * the rows ahead of it and its own, at the observed time per row, spread
   * over the runs that go side by side. 0 before anything has run.
   */
  estimateFinishMs(rows: number): number {
    return ((this.queuedRows + this.runningRows + rows) * this.msPerRow) / Math.max(1, this.options.concurrency);
  }

  submit(inputs: Tensor[], outputNames: string[], opts: SubmitOptions = {}): Promise<Tensor[]> {
    if (this.closed) return Promise.reject(new CancelledError('the model version is being unloaded'));
    if (this.queued >= this.options.maxQueueSize) {
      return Promise.reject(
        new ResourceExhaustedError(`queue full: ${this.queued} requests already wait for this model version (max_queue_size ${this.options.maxQueueSize}); retry later`, { retryElsewhere: true }),
      );
    }
    // Admission by what the queue can finish before the caller's deadline: a request that would
    // only expire in the queue is refused now, while the caller still has time to go elsewhere.
    const rows = rowsOf(inputs);
    const deadline = opts.deadline ?? Infinity;
    const finishMs = this.estimateFinishMs(rows);
    if (Number.isFinite(deadline) && Date.now() + finishMs > deadline) {
      return Promise.reject(
        new ResourceExhaustedError(
          `overloaded: this model version's queue would take about ${Math.round(finishMs)} ms to reach this request, beyond its deadline in ${Math.max(0, Math.round(deadline - Date.now()))} ms; retry later`,
          { retryElsewhere: true },
        ),
      );
    }
    return new Promise<Tensor[]>((resolve, reject) => {
      const request: Pending = {
        inputs,
        outputNames,
        rows,
        enqueued: performance.now(),
        deadline,
        signal: opts.signal,
        onRun: opts.onRun,
        resolve,
        reject,
      };
      // A request that will run at once and alone (no queue, a free slot, no wait for company) needs no group
      // key: building one (sorted input names, dtypes and dims) was most of what batching cost a lone caller.
      const alone = this.groups.size === 0 && this.running < this.options.concurrency && this.options.maxQueueDelayMicros === 0;
      const key = this.options.batching && !alone ? `${outputNames.join(',')}#${batchKey(inputs)}` : `solo-${this.soloCalls++}`;
      let group = this.groups.get(key);
      if (!group) {
        group = { requests: [], rows: 0, due: !this.options.batching || this.options.maxQueueDelayMicros === 0 };
        this.groups.set(key, group);
        if (!group.due) {
          const g = group;
          group.timer = setTimeout(() => {
            g.due = true;
            this.dispatch();
          }, this.options.maxQueueDelayMicros / 1000);
        }
      }
      group.requests.push(request);
      group.rows += request.rows;
      this.queued += 1;
      this.queuedRows += request.rows;
      // A caller that gives up leaves the queue at once, so it never runs and never holds a slot.
      opts.signal?.addEventListener('abort', () => this.withdraw(key, request), { once: true });
      if (group.rows >= this.batchLimit) group.due = true;
      this.dispatch();
    });
  }

  private withdraw(key: string, request: Pending): void {
    const group = this.groups.get(key);
    const at = group?.requests.indexOf(request) ?? -1;
    if (!group || at < 0) return;
    group.requests.splice(at, 1);
    group.rows -= request.rows;
    this.queued -= 1;
    this.queuedRows -= request.rows;
    if (group.requests.length === 0) {
      clearTimeout(group.timer);
      this.groups.delete(key);
    }
    request.reject(new CancelledError('request cancelled by the client before it ran'));
  }

  /** Stops taking requests; waiting ones are failed as CANCELLED, running ones finish. */
  close(): void {
    this.closed = true;
    for (const [key, group] of this.groups) {
      clearTimeout(group.timer);
      for (const r of group.requests) r.reject(new CancelledError('the model version was unloaded before the request ran'));
      this.groups.delete(key);
    }
    this.queued = 0;
    this.queuedRows = 0;
  }

  /** Numbers the groups of requests that run alone. */
  private soloCalls = 0;

  private dispatch(): void {
    while (this.running < this.options.concurrency) {
      const entry = [...this.groups.entries()].find(([, g]) => g.due);
      if (!entry) return;
      const [key, group] = entry;
      const batch = this.take(group);
      if (group.requests.length === 0) {
        clearTimeout(group.timer);
        this.groups.delete(key);
      }
      if (batch.length > 0) void this.execute(batch);
    }
  }

  /** Takes up to the batch limit's rows from the group, dropping cancelled or expired requests. */
  private take(group: Group): Pending[] {
    const batch: Pending[] = [];
    let rows = 0;
    const limit = this.sizer?.nextLimit() ?? this.options.maxBatchSize;
    const now = Date.now();
    while (group.requests.length > 0) {
      const next = group.requests[0];
      if (next.signal?.aborted || next.deadline <= now) {
        group.requests.shift();
        group.rows -= next.rows;
        this.queued -= 1;
        this.queuedRows -= next.rows;
        next.reject(
          next.signal?.aborted
            ? new CancelledError('request cancelled by the client before it ran')
            : new DeadlineExceededError('deadline passed while the request waited in the batch queue'),
        );
        continue;
      }
      if (batch.length > 0 && rows + next.rows > limit) break;
      group.requests.shift();
      group.rows -= next.rows;
      this.queued -= 1;
      this.queuedRows -= next.rows;
      batch.push(next);
      rows += next.rows;
      if (!this.options.batching) break;
    }
    return batch;
  }

  private async execute(batch: Pending[]): Promise<void> {
    this.running += 1;
    const started = performance.now();
    const rows = batch.reduce((n, r) => n + r.rows, 0);
    this.runningRows += rows;
    for (const r of batch) r.onRun?.(started - r.enqueued);
    let cpuMs: number | undefined;
    try {
      const ran = await this.run(concatInputs(batch.map((r) => r.inputs)), batch[0].outputNames);
      cpuMs = ran.cpuMs;
      const parts = splitOutputs(ran.outputs, batch.map((r) => r.rows));
      // The run's CPU time where its session thread measured it (wall time counts whatever else held the
      // cores meanwhile), for runs long enough that the kernel's tick-grained figure means something;
      // else its wall time, stacking and splitting included.
      const wallMs = performance.now() - started;
      this.sizer?.record(rows, cpuMs !== undefined && wallMs >= CPU_TIMED_MIN_MS ? cpuMs : wallMs);
      batch.forEach((r, i) => r.resolve(parts[i]));
    } catch (err) {
      for (const r of batch) r.reject(err);
    } finally {
      this.running -= 1;
      this.runningRows -= rows;
      const runMs = performance.now() - started;
      const perRow = runMs / Math.max(1, rows);
      this.msPerRow = this.msPerRow === 0 ? perRow : 0.8 * this.msPerRow + 0.2 * perRow;
      const event: BatchEvent = { requests: batch.length, rows, queueSeconds: (started - batch[0].enqueued) / 1000, runSeconds: runMs / 1000, cpuSeconds: cpuMs === undefined ? undefined : cpuMs / 1000 };
      // Told once the batch's answers have been written: its metrics do not hold them back.
      afterWrites(() => this.onBatch(event));
      this.dispatch();
    }
  }
}
