import { credentials as grpcCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { SERVICE_INFERENCE, type Discovery, type ServiceInstance } from '@maas/discovery';
import { encodePredictRequest, encodePredictRequestPieces, InferenceServiceWire, InferenceServiceWireClient, type InferenceServiceClient, type PredictRequest, type PredictResponse } from '@maas/proto';
import {
  callUnary,
  defaultClientOptions,
  FRAMES_HEADER,
  framesPortOffered,
  FrameUnaryClient,
  headerMsOf,
  neverSent,
  MAX_MESSAGE_BYTES,
  QUEUE_MS_HEADER,
  RawUnaryClient,
  RECEIVE_WINDOW_BYTES,
  RUN_MS_HEADER,
  type CallOpts,
  type CancelSignal,
  type MessageBytes,
  type RawUnaryAnswer,
  type UnaryMethod,
} from '@maas/rpc';
import type { Metadata } from '@grpc/grpc-js';
import type { Logger } from 'pino';

/**
 * A node's Predict called in this process (a gateway with its node
 * embedded): the answer, not encoded, and the queue and run figures a
 * node's headers carry; failures reject as a gRPC client's do.
 */
export type InProcessPredict = (
  request: PredictRequest,
  opts: { deadline: number; signal: CancelSignal; metadata?: Metadata },
) => Promise<{ response: PredictResponse; queueMs: number; runMs: number }>;

/** A node's Predict answer as it came: the encoded PredictResponse, and the queue and run figures of its headers. */
export interface EncodedPrediction {
  /** The PredictResponse as one buffer (joined on first read when it arrived in chunks). */
  readonly bytes: Buffer;
  /** The same bytes as they arrived, uncopied: for writing the answer out again. */
  readonly wire: MessageBytes;
  queueMs: number;
  runMs: number;
}

/** A node's answer through its raw client: joined into one buffer only when `bytes` is read. */
class RawPrediction implements EncodedPrediction {
  readonly wire: MessageBytes;
  queueMs: number;
  runMs: number;

  constructor(private readonly answer: RawUnaryAnswer) {
    this.wire = answer.pieces;
    this.queueMs = headerMsOf(answer.headers, QUEUE_MS_HEADER);
    this.runMs = headerMsOf(answer.headers, RUN_MS_HEADER);
  }

  get bytes(): Buffer {
    return this.answer.message;
  }
}

const PREDICT_PATH = InferenceServiceWire.predict.path;
const asIs = (bytes: Buffer): Buffer => bytes;

/** A node's Predict through grpc-js that leaves the answer encoded and reads the figures from its headers. */
function grpcPredict(node: NodeHandle): UnaryMethod<PredictRequest, EncodedPrediction> {
  return (request, metadata, options, callback) => {
    let queueMs = 0;
    let runMs = 0;
    const call = node.client.makeUnaryRequest(PREDICT_PATH, encodePredictRequest, asIs, request, metadata, options, (err, bytes) =>
      callback(err, err ? undefined! : { bytes: bytes!, wire: bytes!, queueMs, runMs }),
    );
    call.on('metadata', (headers) => {
      queueMs = headerMsOf(headers, QUEUE_MS_HEADER);
      runMs = headerMsOf(headers, RUN_MS_HEADER);
    });
    return call;
  };
}

/**
 * Sends a Predict over the wire to a node: on its raw client when the pool
 * opened one, else through grpc-js; the answer stays encoded.
 */
export async function predictOnNode(node: NodeHandle, request: PredictRequest, opts: CallOpts): Promise<EncodedPrediction> {
  if (!node.raw) return callUnary(grpcPredict(node), request, opts);
  // The request's large tensors go out uncopied, and the answer comes back as the chunks it arrived in.
  const pieces = encodePredictRequestPieces(request);
  const frames = node.frames;
  if (frames?.usable) {
    try {
      return new RawPrediction(await frames.call(PREDICT_PATH, pieces, opts));
    } catch (err) {
      // No connection to the frames port could be made (a firewall, say): nothing was sent, so HTTP/2 takes the call.
      if (!neverSent(err)) throw err;
    }
  }
  const answer = await node.raw.call(PREDICT_PATH, pieces, opts);
  node.offerFrames?.(answer.headers[FRAMES_HEADER]);
  return new RawPrediction(answer);
}

/** One inference node a router (the gateway, an {@link InferenceClient}) can send calls to. */
export interface NodeHandle {
  instance: ServiceInstance;
  client: InferenceServiceClient;
  /**
   * The same node through a {@link RawUnaryClient}, for Predict bytes the
   * router already holds encoded; absent when the pool was not asked for it
   * (or the channel is TLS, which only grpc-js speaks here).
   */
  raw?: RawUnaryClient;
  /**
   * The same node on its node-frames port (see FrameServer), once one of its
   * HTTP/2 answers named the port: Predicts go there, at less CPU per call.
   */
  frames?: FrameUnaryClient;
  /** Takes a node answer's frames offer, its {@link FRAMES_HEADER} (absent when the pool does not use frames). */
  offerFrames?: (header: string | string[] | undefined) => void;
  /** The node's Predict in this very process, when it is the node embedded here: no transport at all. */
  local?: InProcessPredict;
  /** Requests the router has in flight on it. */
  inFlight: number;
  /** Set after a connection failure: skipped for routing until then (epoch ms). */
  ejectedUntil: number;
  /**
   * Since when (epoch ms) the node has had calls outstanding without answering
   * any call at all; 0 while it answers. A frozen node's grows without bound.
   */
  silentSince: number;
}

/**
 * The live set of healthy inference nodes, kept from discovery: one channel
 * per node, opened and closed as nodes come and go, with in-flight counts and
 * short ejections after failures.
 */
export class NodePool {
  private readonly nodes = new Map<string, NodeHandle>();
  private readonly unsubscribe: () => void;
  private changes = 0;
  /** While discovery's empty answer is not yet believed (see emptyGraceMs). */
  private emptyTimer?: NodeJS.Timeout;

  constructor(
    discovery: Discovery,
    private readonly options: {
      credentials?: ChannelCredentials;
      maxMessageBytes?: number;
      ejectMs?: number;
      /**
       * How long the nodes stay when discovery suddenly says there are none,
       * in ms: a Consul agent that lost its registrations answers "no healthy
       * instance" until the nodes have registered again and passed a check.
       * Nodes that really are gone fail their calls and are ejected meanwhile.
       * 0: believe it at once. @default 30000
       */
      emptyGraceMs?: number;
      /**
       * Also open a {@link RawUnaryClient} per node (see {@link NodeHandle.raw}).
       * Only over insecure channels: with `credentials` for TLS it is ignored.
       */
      rawClient?: boolean;
      /**
       * With {@link rawClient}: move a node's Predicts to its node-frames port
       * once one of its answers names it (see {@link NodeHandle.frames}). @default true
       */
      frames?: boolean;
      /** A node running in this process: the instance with its id or address is called in-process. */
      inProcess?: { id: string; address: string; predict: InProcessPredict };
      logger?: Logger;
    } = {},
  ) {
    this.unsubscribe = discovery.watch(SERVICE_INFERENCE, (instances) => this.onDiscovery(instances));
  }

  private onDiscovery(instances: ServiceInstance[]): void {
    const grace = this.options.emptyGraceMs ?? 30_000;
    if (instances.length > 0 || this.nodes.size === 0 || grace <= 0) {
      clearTimeout(this.emptyTimer);
      this.emptyTimer = undefined;
      return this.update(instances);
    }
    if (this.emptyTimer) return;
    this.options.logger?.warn({ kept: [...this.nodes.keys()], graceMs: grace }, 'discovery lists no inference node; keeping the known ones while they register again');
    this.emptyTimer = setTimeout(() => {
      this.emptyTimer = undefined;
      this.update([]);
    }, grace);
    this.emptyTimer.unref();
  }

  /** Healthy nodes by id, including ejected ones. */
  all(): NodeHandle[] {
    return [...this.nodes.values()];
  }

  /** Moves on whenever the node set changes, so orders computed from it can be kept until then. */
  get generation(): number {
    return this.changes;
  }

  get(id: string): NodeHandle | undefined {
    return this.nodes.get(id);
  }

  /** Marks a node as failing (or too slow) for a while, so routing tries others first. */
  eject(id: string, ms = this.options.ejectMs ?? 2000, reason = 'node failed a call'): void {
    const node = this.nodes.get(id);
    if (!node) return;
    // A short failure ejection never cuts a longer one short.
    node.ejectedUntil = Math.max(node.ejectedUntil, Date.now() + ms);
    this.options.logger?.warn({ node: id, address: node.instance.address, ejectMs: ms, reason }, 'node ejected');
  }

  isEjected(node: NodeHandle): boolean {
    return node.ejectedUntil > Date.now();
  }

  async shutdown(): Promise<void> {
    clearTimeout(this.emptyTimer);
    this.unsubscribe();
    for (const node of this.nodes.values()) this.closeNode(node);
    this.nodes.clear();
  }

  private closeNode(node: NodeHandle): void {
    node.client.close();
    node.raw?.close();
    node.frames?.close();
  }

  /** What opens a node's frames client when one of its answers names the port; undefined when frames are not used. */
  private framesOffer(node: NodeHandle): NodeHandle['offerFrames'] {
    if (!node.raw || this.options.frames === false) return undefined;
    return (header) => {
      // Only from the node itself: an address that is not the one the node advertises (a proxy, a port
      // mapping) keeps its calls on HTTP/2 through it.
      const port = framesPortOffered(header, node.instance.address);
      if (port === undefined || node.frames?.port === port) return;
      node.frames?.close();
      const max = this.options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
      // The node's own host, as discovery gives it; the same limits, keepalive and backoff as its raw client.
      node.frames = new FrameUnaryClient(node.instance.host, port, {
        maxReceiveMessageBytes: max,
        maxSendMessageBytes: max,
        keepaliveMs: 30_000,
        keepaliveTimeoutMs: 10_000,
        initialReconnectBackoffMs: 200,
        maxReconnectBackoffMs: 5_000,
      });
      this.options.logger?.info({ node: node.instance.id, frames: node.frames.address }, 'node Predicts move to its frames port');
    };
  }

  private rawClientOf(address: string): RawUnaryClient | undefined {
    const { rawClient, credentials } = this.options;
    if (!rawClient || (credentials && credentials._isSecure())) return undefined;
    const max = this.options.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    // The same limits, window, keepalive and backoff as the grpc-js channel beside it.
    try {
      return new RawUnaryClient(address, {
        maxReceiveMessageBytes: max,
        maxSendMessageBytes: max,
        receiveWindowBytes: RECEIVE_WINDOW_BYTES,
        keepaliveMs: 30_000,
        keepaliveTimeoutMs: 10_000,
        initialReconnectBackoffMs: 200,
        maxReconnectBackoffMs: 5_000,
      });
    } catch {
      // An address it cannot dial (not host:port) is left to grpc-js, which says what is wrong with it.
      return undefined;
    }
  }

  private update(instances: ServiceInstance[]): void {
    this.changes += 1;
    const seen = new Set<string>();
    for (const instance of instances) {
      seen.add(instance.id);
      const existing = this.nodes.get(instance.id);
      if (existing && existing.instance.address === instance.address) {
        existing.instance = instance;
        continue;
      }
      if (existing) this.closeNode(existing);
      const client = new InferenceServiceWireClient(
        instance.address,
        this.options.credentials ?? grpcCredentials.createInsecure(),
        defaultClientOptions(this.options.maxMessageBytes, { receiveWindowBytes: RECEIVE_WINDOW_BYTES }),
      );
      const own = this.options.inProcess;
      const local = own && (instance.id === own.id || instance.address === own.address) ? own.predict : undefined;
      const node: NodeHandle = { instance, client, raw: this.rawClientOf(instance.address), local, inFlight: 0, ejectedUntil: 0, silentSince: 0 };
      node.offerFrames = this.framesOffer(node);
      this.nodes.set(instance.id, node);
    }
    for (const [id, node] of this.nodes) {
      if (seen.has(id)) continue;
      // Calls still running on it finish or fail on their own; new ones go elsewhere.
      this.closeNode(node);
      this.nodes.delete(id);
    }
    this.options.logger?.info({ nodes: instances.map((i) => `${i.id}@${i.address}`) }, 'inference node set');
  }
}

