import { status } from '@grpc/grpc-js';
import { decodePredictResponse, encodePredictResponse, encodePredictResponsePieces, predictResponseSize, type PredictRequest, type PredictResponse } from '@maas/proto';
import { Cancellation, CancelledError, messageLength, statusOf, type MessageBytes } from '@maas/rpc';
import { batchKey, concatInputs, splitOutputs } from '@maas/tensor';
import type { CallContext } from './predict-router';

/**
 * A node's answer, encoded as it came over the wire (or, from a node in this
 * process, encoded on first read of `bytes`), and how long the request waited
 * in the node's queue and ran there.
 */
export interface NodeAnswer {
  readonly bytes: Buffer;
  /**
   * The answer to write out to the caller: its bytes, or, for one held
   * decoded and not encoded yet, its pieces with large tensors uncopied.
   */
  readonly wire: MessageBytes;
  /** The answer decoded, when it came so (in-process): a stacked one is split without encoding it first. */
  readonly response?: PredictResponse;
  /** Its encoded size in bytes. */
  readonly size: number;
  queueMs: number;
  runMs: number;
}

/** A node answer from bytes that arrived as pieces, joined on first read of `bytes`. */
class ReceivedAnswer implements NodeAnswer {
  readonly wire: MessageBytes;
  readonly size: number;

  constructor(
    private readonly encoded: { readonly bytes: Buffer; readonly wire: MessageBytes },
    public queueMs: number,
    public runMs: number,
  ) {
    this.wire = encoded.wire;
    this.size = messageLength(encoded.wire);
  }

  get bytes(): Buffer {
    return this.encoded.bytes;
  }
}

/** A node answer from bytes that arrived: one buffer, or what a node's client received (a node client's EncodedPrediction). */
export function encodedAnswer(encoded: Buffer | { readonly bytes: Buffer; readonly wire: MessageBytes }, queueMs: number, runMs: number): NodeAnswer {
  if (Buffer.isBuffer(encoded)) return { bytes: encoded, wire: encoded, size: encoded.length, queueMs, runMs };
  return new ReceivedAnswer(encoded, queueMs, runMs);
}

/** A node answer from a PredictResponse in memory, encoded only if its bytes are read. */
export function decodedAnswer(response: PredictResponse, queueMs: number, runMs: number): NodeAnswer {
  let bytes: Buffer | undefined;
  return {
    response,
    get bytes() {
      return (bytes ??= encodePredictResponse(response));
    },
    get wire() {
      return bytes ?? encodePredictResponsePieces(response);
    },
    get size() {
      return bytes?.length ?? predictResponseSize(response);
    },
    queueMs,
    runMs,
  };
}

/** Sends one request (a caller's own, or several callers' stacked) to the nodes of its version. */
export type SendToNode = (request: PredictRequest, ctx: CallContext) => Promise<NodeAnswer>;

/**
 * Failures of a stacked call that say nothing about the node or the version
 * and may be one member's doing (a bad input, an answer over a size limit):
 * each member is then sent alone and gets its own verdict. Any other failure
 * (node down, every node full, deadline, changed artifact) is every member's.
 */
function mayBeOneMembers(err: unknown): boolean {
  switch (statusOf(err)) {
    case status.UNAVAILABLE:
    case status.DEADLINE_EXCEEDED:
    case status.CANCELLED:
    case status.ABORTED:
    case status.NOT_FOUND:
      return false;
    case status.RESOURCE_EXHAUSTED:
      return !(err as { atCapacity?: boolean }).atCapacity;
    default:
      return true;
  }
}

/** The rows of a request whose inputs can be stacked with others' (one first dim throughout), else 0. */
function stackableRows(request: PredictRequest): number {
  const inputs = request.inputs;
  if (inputs.length === 0) return 0;
  const rows = inputs[0].shape[0];
  if (!Number.isSafeInteger(rows) || rows <= 0) return 0;
  const names = new Set<string>();
  for (const t of inputs) {
    if (t.shape[0] !== rows || names.has(t.name)) return 0;
    names.add(t.name);
  }
  return rows;
}

/** How long after a stacked call a version counts as busy, so a caller alone for the moment still waits for its turn's company. */
const RECENT_MS = 50;

function inputBytes(request: PredictRequest): number {
  let n = 0;
  for (const t of request.inputs) {
    n += t.rawData.length;
    for (const s of t.stringData) n += s.length;
  }
  return n;
}

interface Member {
  request: PredictRequest;
  ctx: CallContext;
  rows: number;
  /** Settles the member's wait: its answer, or undefined to send it alone. */
  resolve(answer: NodeAnswer | undefined): void;
  reject(err: unknown): void;
  settled: boolean;
}

/** What the coalescer has learnt of one version. */
interface VersionSeen {
  /** Largest recent answer size per row; undefined until an answer came. */
  answerBytesPerRow?: number;
  /** When the version last had a stacked call, epoch ms. */
  stackedAt: number;
}

interface Group {
  key: string;
  send: SendToNode;
  members: Member[];
  rows: number;
  bytes: number;
}

/** Options of {@link PredictCoalescer}. */
export interface CoalescerOptions {
  /**
   * Most bytes a stacked call may carry each way: its inputs, and its answer
   * as expected from the answers seen so far. 0 turns coalescing off.
   */
  maxBytes: number;
}

/**
 * Coalesces concurrent Predicts of one version into one node call. Requests
 * of a batchable version (max_batch_size > 1, dynamic first dims) that arrive
 * in the same turn of the event loop, with the same input names, dtypes and
 * trailing dims and the same outputs asked for, go to the node as one request
 * stacked along the first dim, up to max_batch_size rows; the answer is split
 * back by rows. So the gateway→node hop, and the node's own per-call work,
 * are paid once per group instead of once per caller. Nothing waits for
 * company: a group is sent at the end of the turn it opened in, and a caller
 * alone in its turn goes as it came (its answer passed through as encoded).
 *
 * Coalescing is for small tensors, where a call's cost is per call rather than
 * per byte: a version is stacked only once an answer has shown its size per
 * row, and a group stays under {@link CoalescerOptions.maxBytes} both ways.
 */
export class PredictCoalescer {
  private readonly open = new Map<string, Group>();
  /** What each version's calls have shown so far, by `model:version`. */
  private readonly versions = new Map<string, VersionSeen>();
  private flushScheduled = false;
  /** Stacked node calls sent, and the callers' requests they carried. */
  readonly stats = { stackedCalls: 0, stackedRequests: 0 };

  constructor(private readonly options: CoalescerOptions) {}

  /**
   * The member's answer (its own PredictResponse bytes), or undefined when it
   * is to be sent alone: it cannot be stacked, or its group's stacked call
   * failed in a way that may be one member's doing.
   * @param others whether other calls of the version are in flight (else a
   * request that opens no group is sent at once).
   */
  submit(key: string, maxRows: number, request: PredictRequest, ctx: CallContext, send: SendToNode, others = true): Promise<NodeAnswer | undefined> {
    const rows = stackableRows(request);
    const seen = this.seen(key);
    const perRow = seen.answerBytesPerRow;
    const bytes = inputBytes(request);
    const maxBytes = this.options.maxBytes;
    const solo = () => this.sendAlone(key, request, ctx, send, rows);
    if (rows === 0 || perRow === undefined || maxRows <= rows || bytes > maxBytes / 2 || perRow * rows > maxBytes / 2) return solo();
    // A lone caller (no other call of the version in flight, no group open, none stacked lately) goes at
    // once, not at the end of the turn; under waves of load the first of a wave waits for the rest.
    const lone = !others && !(Date.now() - seen.stackedAt < RECENT_MS);
    if (lone && this.open.size === 0) return solo(); // no group at all: not even its key is worth making
    const groupKey = `${key}#${request.outputNames.join('\0')}#${batchKey(request.inputs)}`;
    let group = this.open.get(groupKey);
    if (!group && lone) return solo();
    if (group && (group.rows + rows > maxRows || group.bytes + bytes > maxBytes || perRow * (group.rows + rows) > maxBytes)) {
      this.open.delete(groupKey);
      this.flush(group);
      group = undefined;
    }
    if (!group) {
      group = { key, send, members: [], rows: 0, bytes: 0 };
      this.open.set(groupKey, group);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flushAll());
      }
    }
    const g = group;
    g.rows += rows;
    g.bytes += bytes;
    return new Promise<NodeAnswer | undefined>((resolve, reject) => {
      const member: Member = {
        request,
        ctx,
        rows,
        settled: false,
        resolve: (answer) => {
          if (member.settled) return;
          member.settled = true;
          resolve(answer);
        },
        reject: (err) => {
          if (member.settled) return;
          member.settled = true;
          reject(err);
        },
      };
      g.members.push(member);
    });
  }

  private seen(key: string): VersionSeen {
    let seen = this.versions.get(key);
    if (!seen) {
      if (this.versions.size >= 4096) this.versions.clear();
      seen = { stackedAt: -Infinity };
      this.versions.set(key, seen);
    }
    return seen;
  }

  /** Sends one caller's request as it came, learning the version's answer size from the answer. */
  private sendAlone(key: string, request: PredictRequest, ctx: CallContext, send: SendToNode, rows: number): Promise<NodeAnswer> {
    return send(request, ctx).then((answer) => {
      if (rows > 0) this.learn(key, answer.size / rows);
      return answer;
    });
  }

  private learn(key: string, perRow: number): void {
    const seen = this.seen(key);
    const known = seen.answerBytesPerRow;
    // The largest size seen, slowly forgotten: a version whose answers vary is stacked by its big ones.
    seen.answerBytesPerRow = known === undefined ? perRow : Math.max(perRow, 0.9 * known + 0.1 * perRow);
  }

  private flushAll(): void {
    this.flushScheduled = false;
    const groups = [...this.open.values()];
    this.open.clear();
    for (const group of groups) this.flush(group);
  }

  private flush(group: Group): void {
    const { members, key, send } = group;
    if (members.length === 1) {
      const [m] = members;
      this.sendAlone(key, m.request, m.ctx, send, m.rows).then(m.resolve, m.reject);
      return;
    }
    // The stacked call lives while any member still waits for it; a member that gives up leaves at once.
    const control = new Cancellation();
    let waiting = members.length;
    const leave = (m: Member) => {
      m.reject(new CancelledError('the caller cancelled the call'));
      if (--waiting === 0) control.abort();
    };
    const listeners = members.map((m) => {
      const onAbort = () => leave(m);
      if (m.ctx.signal.aborted) onAbort();
      else m.ctx.signal.addEventListener('abort', onAbort, { once: true });
      return onAbort;
    });
    if (waiting === 0) return;
    this.seen(key).stackedAt = Date.now();
    this.stats.stackedCalls += 1;
    this.stats.stackedRequests += members.length;
    const done = () => members.forEach((m, i) => m.ctx.signal.removeEventListener('abort', listeners[i]));
    const first = members[0];
    const stacked: PredictRequest = { ...first.request, inputs: concatInputs(members.map((m) => m.request.inputs)) };
    const ctx: CallContext = { deadline: Math.max(...members.map((m) => m.ctx.deadline)), signal: control.signal, metadata: first.ctx.metadata };
    send(stacked, ctx).then(
      (answer) => {
        done();
        this.learn(key, answer.size / group.rows);
        let response: PredictResponse;
        let parts: PredictResponse['outputs'][];
        try {
          response = answer.response ?? decodePredictResponse(answer.bytes);
          parts = splitOutputs(response.outputs, members.map((m) => m.rows));
        } catch {
          // An answer that does not split by rows (an output without the batch dim): each member alone.
          for (const m of members) m.resolve(undefined);
          return;
        }
        members.forEach((m, i) => m.resolve(encodedAnswer(encodePredictResponse({ model: response.model, version: response.version, outputs: parts[i] }), answer.queueMs, answer.runMs)));
      },
      (err: unknown) => {
        done();
        const alone = mayBeOneMembers(err);
        for (const m of members) {
          if (alone) m.resolve(undefined);
          else m.reject(err);
        }
      },
    );
  }
}
