import { status, type ChannelCredentials, type Metadata } from '@grpc/grpc-js';
import { createDiscovery, rankNodes, SERVICE_INFERENCE, type Discovery } from '@maas/discovery';
import { decodePredictResponse, type PredictRequest, type PredictResponse } from '@maas/proto';
import { DeadlineExceededError, markedRetryElsewhere, statusOf, UnavailableError, type CancelSignal } from '@maas/rpc';
import { NodePool, predictOnNode, type NodeHandle } from './node-pool';

/** Options of {@link InferenceClient}. */
export interface InferenceClientOptions {
  /** Consul agent to find inference nodes through (host:port or URL, as CONSUL_HTTP_ADDR). */
  consulAddress?: string;
  /** Consul ACL token (as CONSUL_HTTP_TOKEN). */
  consulToken?: string;
  /** Node addresses (host:port) when there is no Consul. */
  nodes?: string[];
  /** A discovery of the caller's own, instead of the two above. */
  discovery?: Discovery;
  /** Home nodes per model version, as the gateway's GATEWAY_HOME_NODES. @default 2 */
  homeNodes?: number;
  /** Deadline of a call that names none, in ms. @default 30000 */
  defaultTimeoutMs?: number;
  /** How long a node that failed with UNAVAILABLE is tried last, in ms. @default 5000 */
  ejectMs?: number;
  /** TLS to the nodes (clientCredentials of @maas/rpc); insecure by default. */
  credentials?: ChannelCredentials;
  /**
   * Predicts go on a plain node:http2 connection per node (RawUnaryClient of
   * @maas/rpc: one write per call, none of grpc-js's call layers), as the
   * gateway's do; false sends them through grpc-js. Over TLS always grpc-js.
   * @default true
   */
  raw?: boolean;
  /**
   * With {@link raw}: a node's Predicts move to its node-frames port once one
   * of its answers names it (a plain TCP connection, less CPU per call), as
   * the gateway's do. @default true
   */
  frames?: boolean;
}

/** Per-call options of {@link InferenceClient.predict}. */
export interface PredictOptions {
  /** Relative deadline of the whole call, failover included. */
  timeoutMs?: number;
  /** Absolute deadline (epoch ms); wins over timeoutMs. */
  deadlineMs?: number;
  signal?: CancelSignal;
  metadata?: Metadata;
}

/** Failures another node may not have: the node is down, draining, or full. */
function worthAnotherNode(err: unknown): boolean {
  return statusOf(err) === status.UNAVAILABLE || markedRetryElsewhere(err);
}

/**
 * Calls inference nodes directly, in one hop, for services inside the
 * deployment: it finds the nodes the way the gateway does (Consul, or static
 * addresses), ranks them with the gateway's rendezvous order so a version is
 * asked of the nodes that already hold it, sends each call to the least busy
 * home, and fails over to the next node when one is down, draining or full,
 * within the call's deadline. It does no authentication, admission or
 * metrics: those are the public gateway's, and a direct caller is trusted.
 *
 * A request naming an alias (or neither version nor alias) is resolved by the
 * node; the version it answered is remembered so the next call ranks like the
 * gateway. To pin an artifact across a delete and re-create of a model, put
 * its sha256 in the request: a node holding another answers ABORTED.
 */
export class InferenceClient {
  /** The nodes, kept from discovery as the gateway keeps them (channels, ejections, an empty answer's grace). */
  private readonly pool: NodePool;
  private readonly discovery: Discovery;
  private readonly ownsDiscovery: boolean;
  /** `model@alias` → the version a node last answered for it. */
  private readonly aliases = new Map<string, number>();
  private readonly k: number;

  constructor(private readonly options: InferenceClientOptions) {
    this.k = Math.max(1, options.homeNodes ?? 2);
    this.ownsDiscovery = !options.discovery;
    if (!options.discovery && !options.consulAddress && !(options.nodes && options.nodes.length > 0)) {
      throw new Error('InferenceClient needs consulAddress, nodes or a discovery to find inference nodes');
    }
    this.discovery =
      options.discovery ?? createDiscovery({ consulAddress: options.consulAddress, consulToken: options.consulToken, static: { [SERVICE_INFERENCE]: options.nodes ?? [] } });
    this.pool = new NodePool(this.discovery, { credentials: options.credentials, ejectMs: options.ejectMs ?? 5000, rawClient: options.raw ?? true, frames: options.frames ?? true });
  }

  /** The node ids this client knows now, in no order. */
  get nodeIds(): string[] {
    return this.pool.all().map((n) => n.instance.id);
  }

  /** Runs a prediction on a node holding the version; see the class comment for routing and failover. */
  async predict(request: PredictRequest, opts: PredictOptions = {}): Promise<PredictResponse> {
    const deadline = opts.deadlineMs ?? Date.now() + (opts.timeoutMs ?? this.options.defaultTimeoutMs ?? 30_000);
    const aliasKey = `${request.model}@${request.alias || 'production'}`;
    const version = request.version > 0 ? request.version : this.aliases.get(aliasKey);
    const candidates = this.candidates(version === undefined ? request.model : `${request.model}:${version}`);
    if (candidates.length === 0) throw new UnavailableError(`no healthy inference node known for ${request.model} (discovery lists none)`);
    let last: unknown;
    for (const node of candidates) {
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (Date.now() >= deadline) break;
      node.inFlight += 1;
      try {
        const answer = decodePredictResponse((await predictOnNode(node, request, { deadlineMs: deadline, signal: opts.signal, metadata: opts.metadata })).bytes);
        if (request.version <= 0) this.aliases.set(aliasKey, answer.version);
        return answer;
      } catch (err) {
        if (!worthAnotherNode(err)) throw err;
        if (statusOf(err) === status.UNAVAILABLE) this.pool.eject(node.instance.id);
        last = err;
      } finally {
        node.inFlight -= 1;
      }
    }
    if (last && Date.now() < deadline) throw last;
    throw new DeadlineExceededError(`no node answered ${request.model} before the deadline${last ? ` (last: ${(last as Error).message})` : ''}`);
  }

  /** Stops watching discovery and closes every channel. */
  async close(): Promise<void> {
    await this.pool.shutdown();
    if (this.ownsDiscovery) await this.discovery.shutdown();
  }

  /**
   * Nodes in the order they are tried: the key's homes (its first `homeNodes`
   * by rendezvous rank) least busy first, then the others in rank order;
   * recently failed nodes last.
   */
  private candidates(key: string): NodeHandle[] {
    const ranked = rankNodes(key, this.nodeIds).map((id) => this.pool.get(id)!);
    const homes = ranked.slice(0, this.k).sort((a, b) => a.inFlight - b.inFlight);
    const order = [...homes, ...ranked.slice(this.k)];
    return [...order.filter((n) => !this.pool.isEjected(n)), ...order.filter((n) => this.pool.isEjected(n))];
  }
}
