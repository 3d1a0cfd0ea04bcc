import type { ModelVersion, Tensor } from '@maas/proto';
import { isBatchable } from '@maas/tensor';
import { DynamicBatcher, type BatchEvent, type SubmitOptions } from './dynamic-batcher';
import { openSession, type SessionRunner } from './session-runner';

/** onnxruntime session settings of a node. */
export interface SessionSettings {
  /** @default 1 */
  intraOpThreads: number;
  /** @default 1 */
  interOpThreads: number;
  /** Idle intra-op threads spin (true) or sleep (false). @default true */
  intraOpSpinning?: boolean;
  /** Versions whose artifact has at least this many bytes run on a session thread of their own. @default 1 MiB */
  sessionThreadMinBytes?: number;
  /** Batches are capped at the size that runs fastest per row, as measured (see batch-sizer.ts). @default true */
  adaptiveBatching?: boolean;
}

/**
 * One model version loaded on this node: its onnxruntime session, its batcher
 * and its bookkeeping (in-flight count, last use, memory cost). The version's
 * artifact sha256 is its identity: the same `model:version` may name other
 * weights after the model was deleted and created again.
 */
export class LoadedModel {
  readonly batcher: DynamicBatcher;
  /** Requests are stacked into shared runs (max_batch_size > 1 and dynamic first dims throughout). */
  readonly batching: boolean;
  readonly loadTime = new Date();
  lastUsed = Date.now();
  /** Resident bytes this version costs, as {@link ModelManager} measured them (see version-cost.ts). */
  memoryBytes = 0;
  private active = 0;
  private idleWaiters: Array<() => void> = [];

  private constructor(
    readonly version: ModelVersion,
    private readonly session: SessionRunner,
    onBatch: (event: BatchEvent) => void,
    adaptiveBatching: boolean,
  ) {
    const runtime = version.runtime;
    this.batching = isBatchable(version.inputs, version.outputs) && (runtime?.maxBatchSize ?? 0) > 1;
    this.batcher = new DynamicBatcher(
      (inputs, outputNames) => this.session.run(inputs, outputNames),
      {
        batching: this.batching,
        maxBatchSize: runtime?.maxBatchSize || 1,
        maxQueueDelayMicros: runtime?.maxQueueDelayMicros ?? 0,
        maxQueueSize: runtime?.maxQueueSize || 1024,
        adaptiveSize: adaptiveBatching,
        // One batch in flight per session instance.
        concurrency: session.instances,
      },
      onBatch,
    );
  }

  /** Creates the session for an artifact already on disk. */
  static async load(version: ModelVersion, path: string, settings: SessionSettings, onBatch: (event: BatchEvent) => void): Promise<LoadedModel> {
    const options = {
      intraOpNumThreads: settings.intraOpThreads,
      interOpNumThreads: settings.interOpThreads,
      executionMode: 'sequential' as const,
      graphOptimizationLevel: 'all' as const,
      logSeverityLevel: 3 as const,
      extra: { session: { intra_op: { allow_spinning: settings.intraOpSpinning === false ? '0' : '1' } } },
    };
    // A thread hand-off costs tens of microseconds: worth it for models whose runs block the event
    // loop for milliseconds, not for tiny ones. Artifact size stands in for run time.
    const thread = Number(version.sizeBytes) >= (settings.sessionThreadMinBytes ?? 1024 * 1024);
    // instance_count sessions, each with its own copy of the weights and its own intra-op threads.
    const instances = Math.max(1, version.runtime?.instanceCount ?? 1);
    const session = await openSession(path, options, { thread, instances });
    return new LoadedModel(version, session, onBatch, settings.adaptiveBatching ?? true);
  }

  /** Where this version's runs happen. */
  get runsOn(): 'main' | 'thread' {
    return this.session.where;
  }

  /** The artifact this version runs. */
  get sha256(): string {
    return this.version.sha256;
  }

  /** Sessions of this version that run side by side (its instance_count). */
  get instances(): number {
    return this.session.instances;
  }

  /** Requests accepted and not yet answered. */
  get inFlight(): number {
    return this.active;
  }

  /** Runs one request through the batcher. Inputs must be validated already. */
  async predict(inputs: Tensor[], outputNames: string[], opts: SubmitOptions = {}): Promise<Tensor[]> {
    this.active += 1;
    this.lastUsed = Date.now();
    try {
      return await this.batcher.submit(inputs, outputNames, opts);
    } finally {
      this.active -= 1;
      this.lastUsed = Date.now();
      if (this.active === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  /** Resolves once no request is in flight. */
  drained(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Waits for in-flight work, then frees the session. */
  async unload(): Promise<void> {
    await this.drained();
    this.batcher.close();
    await this.session.release();
  }
}
