import { drainAfterWrites } from '@maas/rpc';
/** One finished inference request, as the gateway saw it. */
export interface InferenceOutcome {
  model: string;
  version: number;
  ok: boolean;
  /** The whole request at the gateway, in ms. */
  totalMs: number;
  /** Wait in the node's queue, in ms (the node's `maas-queue-ms`); 0 when unknown. */
  queueMs: number;
  /** The node's run, in ms (the node's `maas-run-ms`); 0 when unknown. */
  runMs: number;
  /** Rows of the request (its first dimension). */
  rows: number;
}

/** A count and a total duration, in nanoseconds. */
export interface Duration {
  count: number;
  ns: number;
}

/** What is kept per model version. */
export interface VersionStatistics {
  model: string;
  version: number;
  /** Epoch ms of the last inference (successful or not). */
  lastInference: number;
  /** Rows inferred successfully. */
  inferenceCount: number;
  /** Requests run successfully (a node may have batched several into one run). */
  executionCount: number;
  success: Duration;
  fail: Duration;
  queue: Duration;
  computeInfer: Duration;
}

const MS = 1e6;

/**
 * Cumulative inference statistics per model version, kept by this gateway
 * for every Predict and ModelInfer it routed (each gateway counts its own
 * calls). Success and failure durations are the gateway's whole request;
 * queue and compute are what the answering node reported of its own queue
 * and run.
 */
export class ModelStatistics {
  private readonly versions = new Map<string, VersionStatistics>();

  record(outcome: InferenceOutcome, now = Date.now()): void {
    const key = `${outcome.model}:${outcome.version}`;
    let stats = this.versions.get(key);
    if (!stats) {
      // Bounded: model versions, not requests, are the keys; a flood of names never grows it unboundedly.
      if (this.versions.size >= 10_000) return;
      stats = { model: outcome.model, version: outcome.version, lastInference: 0, inferenceCount: 0, executionCount: 0, success: zero(), fail: zero(), queue: zero(), computeInfer: zero() };
      this.versions.set(key, stats);
    }
    stats.lastInference = now;
    if (!outcome.ok) return add(stats.fail, outcome.totalMs);
    add(stats.success, outcome.totalMs);
    stats.inferenceCount += outcome.rows;
    stats.executionCount += 1;
    add(stats.queue, outcome.queueMs);
    add(stats.computeInfer, outcome.runMs);
  }

  /** The statistics of `model` (every model when empty), of `version` (every version when 0), by model then version. */
  query(model: string, version: number): VersionStatistics[] {
    // Outcomes are recorded once each answer has been written: those still held are counted before reading.
    drainAfterWrites();
    return [...this.versions.values()]
      .filter((s) => (!model || s.model === model) && (!version || s.version === version))
      .sort((a, b) => a.model.localeCompare(b.model) || a.version - b.version);
  }
}

function zero(): Duration {
  return { count: 0, ns: 0 };
}

function add(duration: Duration, ms: number): void {
  duration.count += 1;
  duration.ns += Math.round(ms * MS);
}
