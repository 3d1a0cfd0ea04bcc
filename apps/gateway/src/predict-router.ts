import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { decodePredictResponse, type ModelVersion, type PredictRequest, type PredictResponse } from '@maas/proto';
import {
  afterWrites,
  Cancellation,
  deadlineMsOf,
  DeadlineExceededError,
  InvalidArgumentError,
  markedRetryElsewhere,
  ResourceExhaustedError,
  statusOf,
  UnavailableError,
  validateAlias,
  validateModelName,
  type ModelRef,
  type CancelSignal,
  type CallOpts,
  type MessageBytes,
} from '@maas/rpc';
import type { Logger } from 'pino';
import { predictOnNode, type NodeHandle, type NodePool } from '@maas/inference-client';
import { Admission } from './admission';
import { runAttempts, silentForMs } from './hedged-attempts';
import { decodedAnswer, encodedAnswer, PredictCoalescer, type CoalescerOptions, type NodeAnswer } from './predict-coalescer';
import { LatencyTracker, type LatencyTrackerOptions } from './latency-tracker';
import type { ModelStatistics } from './model-statistics';
import { OutlierDetector, type OutlierOptions } from './outlier-detector';
import { rankNodes } from '@maas/discovery';
import { isBatchable } from '@maas/tensor';
import type { VersionResolver } from './version-resolver';

/**
 * Whether the same request may go to another node: the node could not take
 * it (gone, cancelled its run, or out of queue or memory, which it marks with
 * the maas-retry-elsewhere trailer). A RESOURCE_EXHAUSTED without the mark is a
 * size limit, and fails the same on every node.
 */
function retryElsewhere(err: unknown): boolean {
  const code = statusOf(err);
  return code === status.UNAVAILABLE || code === status.CANCELLED || markedRetryElsewhere(err);
}

/** grpc-js's own words when an answer is over the channel's receive limit. */
const OVER_LIMIT = /^Received message larger than max \((\d+) vs\.? (\d+)\)/;

/** A node is stuck when silent with calls outstanding for 4 × the hedge delay, and never sooner than this. */
const STUCK_FLOOR_MS = 500;

/**
 * What a node's answer says about its speed: the round trip without the wait
 * in the node's queue, shared among the calls that were outstanding on the
 * node when it was sent (they cross the same connection and event loop ahead
 * of it). A node that is merely busy (the homes of a model under overload,
 * tens of calls each) so compares fairly with one that sees only the odd
 * hedged copy, and is not ejected for it; a slow node is as slow per call
 * however few it is given.
 */
export function serviceMs(ms: number, queueMs: number, load: number): number {
  return Math.max(0, ms - queueMs) / Math.max(1, load);
}

const NEVER_CANCELLED = new Cancellation();

/** A node's Predict: in this process when the node is embedded here, else over the wire (see predictOnNode). */
async function sendPredict(node: NodeHandle, request: PredictRequest, opts: CallOpts): Promise<NodeAnswer> {
  if (node.local) {
    const { response, queueMs, runMs } = await node.local(request, { deadline: deadlineMsOf(opts), signal: opts.signal ?? NEVER_CANCELLED, metadata: opts.metadata });
    return decodedAnswer(response, queueMs, runMs);
  }
  const answer = await predictOnNode(node, request, opts);
  return encodedAnswer(answer, answer.queueMs, answer.runMs);
}

function validateRef(request: ModelRef): void {
  validateModelName(request.model);
  if (request.version > 0 && request.alias) throw new InvalidArgumentError('give a version or an alias, not both');
  if (request.alias) validateAlias(request.alias);
}

/** What the caller's call gives the router: deadline, cancellation and metadata to forward. */
export interface CallContext {
  /** Epoch ms; Infinity when the caller set none. */
  deadline: number;
  signal: CancelSignal;
  /** Metadata forwarded to the node (request id). */
  metadata?: Metadata;
}

/** Options of {@link PredictRouter}. */
export interface PredictRouterOptions {
  /** Home nodes per model version. @default 2 */
  homeNodes?: number;
  /** Deadline applied when the caller set none, in ms. @default 30000 */
  defaultTimeoutMs?: number;
  /** Latency outlier detection; see {@link OutlierDetector}. */
  outliers?: OutlierOptions & {
    /** How long a slow node is left out, in ms. @default 10000 */
    ejectMs?: number;
  };
  /** When a call is late enough to hedge; see {@link LatencyTracker}. */
  hedging?: LatencyTrackerOptions;
  /** Where each routed request's outcome is counted (the protocol's ModelStatistics). */
  statistics?: ModelStatistics;
  /** Stacking of concurrent Predicts of one batchable version into one node call; off when absent or maxBytes is 0. */
  coalesce?: CoalescerOptions;
  logger?: Logger;
}

/** Tokens earned per request, spent one per hedged copy, so hedges stay a small share of the load. */
class TokenBucket {
  private tokens: number;

  constructor(
    private readonly perRequest: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }

  earn(): void {
    this.tokens = Math.min(this.burst, this.tokens + this.perRequest);
  }

  take(): boolean {
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * Routes a Predict: resolves the version, ranks the healthy nodes by
 * rendezvous hashing of `model:version`, sends to the least busy of the first
 * k (its homes), and on a node failure retries the next candidates within the
 * caller's deadline. Deadline and cancellation travel to the node.
 */
export class PredictRouter {
  private readonly k: number;
  /** Rendezvous orders by `model:version`, valid for one node-set generation. */
  private readonly ranks = new Map<string, { generation: number; nodes: NodeHandle[] }>();
  private readonly outliers: OutlierDetector;
  private readonly latency: LatencyTracker;
  private readonly admission = new Admission();
  /** Hedged copies are paid from this budget: about one per ten requests, in bursts of ten. */
  private readonly hedges = new TokenBucket(0.1, 10);
  /** Absent when coalescing is off. */
  readonly coalescer?: PredictCoalescer;

  constructor(
    private readonly pool: NodePool,
    private readonly resolver: VersionResolver,
    private readonly options: PredictRouterOptions = {},
  ) {
    this.k = Math.max(1, options.homeNodes ?? 2);
    this.outliers = new OutlierDetector(options.outliers);
    this.latency = new LatencyTracker(options.hedging);
    if ((options.coalesce?.maxBytes ?? 0) > 0) this.coalescer = new PredictCoalescer(options.coalesce!);
  }

  /** The version a request names: explicit, else alias, else `production`, else latest READY. */
  resolve(request: ModelRef, ctx: CallContext, fresh = false): Promise<ModelVersion> {
    validateRef(request);
    return this.lookup(request, ctx, fresh);
  }

  /** {@link resolve} of a reference already validated. */
  private lookup(request: ModelRef, ctx: CallContext, fresh = false): Promise<ModelVersion> {
    return this.resolver.resolve({ model: request.model, version: request.version, alias: request.alias }, { deadlineMs: ctx.deadline, signal: ctx.signal }, fresh);
  }

  /** Candidate nodes in the order they will be tried: least busy home first (this process's own node among equals), then the rest by rank. */
  candidates(model: string, version: number): NodeHandle[] {
    const ranked = this.ranked(`${model}:${version}`);
    const usable = ranked.filter((n) => !this.pool.isEjected(n));
    // Ejected nodes are last resorts, never among the homes picked by load; among them, the one
    // back soonest first (the most recently ejected, say a node just found stuck, last).
    const ejected = ranked.filter((n) => this.pool.isEjected(n)).sort((a, b) => a.ejectedUntil - b.ejectedUntil);
    if (usable.length === 0) return ejected;
    // Between equally busy homes, a node in this process (GATEWAY_EMBEDDED_NODE) first: no hop.
    const homes = usable.slice(0, this.k).sort((a, b) => a.inFlight - b.inFlight || Number(b.local !== undefined) - Number(a.local !== undefined));
    return [...homes, ...usable.slice(this.k), ...ejected];
  }

  /** The nodes a version lives on: its first {@link PredictRouterOptions.homeNodes} candidates. */
  homesOf(model: string, version: number): NodeHandle[] {
    return this.candidates(model, version).slice(0, this.k);
  }

  /** Leaves a node out for a while when it answers far slower than its peers on the same model version. */
  private noteLatency(key: string, node: NodeHandle, ms: number): void {
    const id = node.instance.id;
    const why = this.outliers.record(key, id, ms);
    if (!why || this.pool.isEjected(node)) return;
    // Never leave a model without a node: only eject while another usable node exists.
    if (!this.pool.all().some((n) => n !== node && !this.pool.isEjected(n))) return;
    this.outliers.forget(id);
    this.pool.eject(id, this.options.outliers?.ejectMs ?? 10_000, `slow: ${why}`);
  }

  private ranked(key: string): NodeHandle[] {
    const generation = this.pool.generation;
    const known = this.ranks.get(key);
    if (known?.generation === generation) return known.nodes;
    const nodes = rankNodes(key, this.pool.all().map((n) => n.instance.id)).map((id) => this.pool.get(id)!);
    if (this.ranks.size >= 4096) this.ranks.clear();
    this.ranks.set(key, { generation, nodes });
    return nodes;
  }

  /** Routes a Predict and answers with the node's PredictResponse, decoded. */
  async predict(request: PredictRequest, ctx: CallContext): Promise<PredictResponse> {
    const answer = await this.answer(request, ctx);
    // A node in this process answered decoded: no encoding to decode again.
    return answer.response ?? decodePredictResponse(answer.bytes);
  }

  /**
   * Routes a Predict and answers with the node's PredictResponse bytes as
   * they arrived: the gateway passes output tensors through without decoding
   * and re-encoding them.
   */
  async predictEncoded(request: PredictRequest, ctx: CallContext): Promise<Buffer> {
    return (await this.answer(request, ctx)).bytes;
  }

  /** {@link predictEncoded} for a writer that takes pieces: an answer held decoded goes out without its large tensors copied. */
  async predictWire(request: PredictRequest, ctx: CallContext): Promise<MessageBytes> {
    return (await this.answer(request, ctx)).wire;
  }

  /** Routes a Predict: the node's answer, as it came (see {@link NodeAnswer}). */
  private async answer(request: PredictRequest, ctx: CallContext): Promise<NodeAnswer> {
    const deadline = Number.isFinite(ctx.deadline) ? ctx.deadline : Date.now() + (this.options.defaultTimeoutMs ?? 30_000);
    const routed = { ...ctx, deadline };
    try {
      validateRef(request);
      // A version this process holds in memory is routed on at once, while its generation read is in
      // flight, instead of after it: the answer is given only once the read finds the version current.
      const held = this.resolver.peek(request);
      if (held) {
        const answer = this.route(request, held.version, routed).then(
          (answered) => ({ answered }),
          (err: unknown) => ({ err }),
        );
        if (await held.current) {
          const outcome = await answer;
          if ('err' in outcome) throw outcome.err;
          return outcome.answered;
        }
        // Not current any more (a write moved the model on): that answer is dropped, unread.
      }
      return await this.route(request, await this.lookup(request, routed), routed);
    } catch (err) {
      // ABORTED: the node holds another artifact for this version than we resolved (the model was
      // deleted and created again, and this process had not heard yet). Resolve afresh, once.
      if (statusOf(err) !== status.ABORTED || ctx.signal.aborted) throw err;
      return this.route(request, await this.lookup(request, routed, true), routed);
    }
  }

  /** Routes a resolved Predict: alone, or stacked with others of its version (see {@link PredictCoalescer}). */
  private async route(request: PredictRequest, version: ModelVersion, ctx: CallContext): Promise<NodeAnswer> {
    const key = `${version.model}:${version.version}`;
    // The artifact travels with the request: a node answers only from a session of exactly it.
    const forwarded: PredictRequest = { ...request, model: version.model, version: version.version, alias: '', sha256: version.sha256 };
    const send = (req: PredictRequest, sendCtx: CallContext) => this.send(req, version, sendCtx);
    this.hedges.earn();
    this.admission.admit(key, ctx.deadline);
    let answered: NodeAnswer | undefined;
    const started = performance.now();
    try {
      const maxRows = this.coalescer && isBatchable(version.inputs, version.outputs) ? (version.runtime?.maxBatchSize ?? 0) : 0;
      if (maxRows > 1) answered = await this.coalescer!.submit(key, maxRows, forwarded, ctx, send, this.admission.inFlightOf(key) > 1);
      answered ??= await send(forwarded, ctx);
      return answered;
    } finally {
      this.admission.done(key, answered !== undefined);
      const { statistics } = this.options;
      if (statistics) {
        const outcome = {
          model: version.model,
          version: version.version,
          ok: answered !== undefined,
          totalMs: performance.now() - started,
          queueMs: answered?.queueMs ?? 0,
          runMs: answered?.runMs ?? 0,
          rows: request.inputs[0]?.shape[0] ?? 1,
        };
        // Counted once the answer has been written: the statistics do not hold it back.
        afterWrites(() => statistics.record(outcome));
      }
    }
  }

  /** Sends a request (one caller's, or several callers' stacked) to the version's candidates in turn. */
  private async send(forwarded: PredictRequest, version: ModelVersion, ctx: CallContext): Promise<NodeAnswer> {
    const { deadline } = ctx;
    const candidates = this.candidates(version.model, version.version);
    if (candidates.length === 0) {
      throw new UnavailableError(`no healthy inference node for ${version.model}:${version.version} (0 nodes in the healthy set)`);
    }
    const key = `${version.model}:${version.version}`;
    const lateAfterMs = this.latency.lateAfterMs(key);
    let atCapacity = false;
    try {
      return await runAttempts<NodeAnswer>({
        candidates,
        signal: ctx.signal,
        lateAfterMs,
        stuckAfterMs: Math.max(STUCK_FLOOR_MS, 4 * lateAfterMs),
        send: (node, signal) => sendPredict(node, forwarded, { deadlineMs: deadline, signal, metadata: ctx.metadata }),
        mayHedge: () => this.hedges.take(),
        retryElsewhere,
        isEjected: (node) => this.pool.isEjected(node),
        // Hedging goes by the whole round trip; a node's speed by its time per call (see serviceMs).
        // Latency bookkeeping waits until the answer has been written (it steers later calls, not this one).
        onSuccess: (node, ms, answer, load) =>
          afterWrites(() => {
            this.latency.record(key, ms);
            this.noteLatency(key, node, serviceMs(ms, answer.queueMs, load));
          }),
        onLateAnswer: (node, ms, answer, load) => afterWrites(() => this.noteLatency(key, node, serviceMs(ms, answer.queueMs, load))),
        onFailure: (node, err) => {
          if (statusOf(err) === status.UNAVAILABLE) this.pool.eject(node.instance.id);
          if (statusOf(err) === status.RESOURCE_EXHAUSTED) atCapacity = true;
          this.options.logger?.warn({ node: node.instance.id, model: version.model, version: version.version, err: (err as ServiceError).details }, 'node failed; trying the next one');
        },
        // A node that keeps calls and answers none (frozen, partitioned) is worse than a slow one:
        // it is ejected even when every other node is ejected too; ejected nodes stay last resorts.
        onStuck: (node) =>
          this.pool.eject(node.instance.id, this.options.outliers?.ejectMs ?? 10_000, `stuck: calls outstanding for ${silentForMs(node)} ms without any answer (on ${key})`),
        exhausted: (last) => {
          const why = (last as ServiceError | undefined)?.details ?? 'no node was tried';
          // Overload is said as overload, so callers back off instead of treating the service as down.
          if (atCapacity) {
            return Object.assign(new ResourceExhaustedError(`every node that can serve ${key} is at capacity (${candidates.length} tried; last: ${why})`), { atCapacity: true });
          }
          return new UnavailableError(`every healthy node failed for ${key} (${candidates.length} tried; last: ${why})`);
        },
      });
    } catch (err) {
      const over = statusOf(err) === status.RESOURCE_EXHAUSTED ? OVER_LIMIT.exec((err as ServiceError).details ?? '') : null;
      if (over) {
        throw new ResourceExhaustedError(
          `the answer of ${key} is ${over[1]} bytes, above the gateway's message limit of ${over[2]} bytes (GATEWAY_MAX_MESSAGE_BYTES): request fewer rows or outputs`,
        );
      }
      if (statusOf(err) === status.DEADLINE_EXCEEDED && Date.now() >= deadline) {
        throw new DeadlineExceededError(`deadline passed while routing ${key} (tried ${candidates.length} node(s))`, { cause: err });
      }
      throw err;
    }
  }
}
