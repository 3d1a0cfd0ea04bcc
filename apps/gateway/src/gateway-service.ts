import { Metadata, type handleUnaryCall, type Server } from '@grpc/grpc-js';
import {
  decodePredictRequest,
  encodePredictResponse,
  GatewayServiceWire,
  type GatewayServiceServer,
  type ModelMetadataRequest,
  type ModelMetadataResponse,
  type NodeInfo,
  type PredictRequest,
  type PredictResponse,
} from '@maas/proto';
import { REQUEST_ID_HEADER } from '@maas/observability';
import { callCancellation, callDeadlineMs, callUnary, unary, UnavailableError, validateModelName, type CallObserver, type MessageBytes, type RawUnaryRoute, type ServerSurfaceCall } from '@maas/rpc';
import type { RegistryClient } from '@maas/registry-client';
import type { GatewayAuth } from './gateway-auth';
import type { NodePool } from '@maas/inference-client';
import type { CallContext, PredictRouter } from './predict-router';

/**
 * The routing context of an incoming call: its deadline, cancellation and
 * request id, forwarded to the node as {@link rpcInterceptor} set it (the one
 * place ids are checked and minted, so the gateway's log and the node's agree).
 */
export function contextOf(call: ServerSurfaceCall): CallContext {
  const metadata = new Metadata();
  const id = call.metadata.get(REQUEST_ID_HEADER)[0];
  if (id !== undefined) metadata.set(REQUEST_ID_HEADER, id);
  return { deadline: callDeadlineMs(call), signal: callCancellation(call), metadata };
}

/**
 * `maas.v1.GatewayService` as the gateway serves it: Predict's answer may be
 * the bytes of a PredictResponse that a node encoded, sent on unchanged.
 */
export const GatewayServiceServed = {
  ...GatewayServiceWire,
  predict: { ...GatewayServiceWire.predict, responseSerialize: (answer: PredictResponse | Buffer): Buffer => (Buffer.isBuffer(answer) ? answer : encodePredictResponse(answer)) },
};

/** `maas.v1.GatewayService`: the public inference API. */
export class GatewayService {
  constructor(
    private readonly router: PredictRouter,
    private readonly pool: NodePool,
    private readonly registry: () => RegistryClient,
    private readonly auth: GatewayAuth,
  ) {}

  addToServer(server: Server): void {
    server.addService(GatewayServiceServed, this.handlers());
  }

  handlers(): GatewayServiceServer {
    return {
      // Answers with encoded bytes, which GatewayServiceServed's serializer sends as they are.
      predict: unary<PredictRequest, Buffer>('Predict', (req, call) => this.predict(req, call)) as unknown as handleUnaryCall<PredictRequest, PredictResponse>,
      modelMetadata: unary('ModelMetadata', (req: ModelMetadataRequest, call) => this.modelMetadata(req, call)),
      listModels: unary('ListModels', (req, call) => {
        this.auth.authorize(call, 'predict');
        return this.registry().listModels(req, { deadlineMs: callDeadlineMs(call) });
      }),
      listNodes: unary('ListNodes', async (_req, call) => {
        this.auth.authorize(call, 'predict');
        return { nodes: await this.listNodes() };
      }),
    };
  }

  /**
   * Predict as a raw HTTP/2 route: the request decoded once from the bytes
   * that arrived, the node's answer bytes written out as they came, and the
   * same observers as the grpc-js methods (request ids, logs, metrics, intake).
   */
  predictRoute(observers: readonly CallObserver[]): RawUnaryRoute<PredictRequest> {
    return { path: GatewayServiceWire.predict.path, decode: decodePredictRequest, handle: (req, call) => this.predict(req, call, 'pieces'), observers };
  }

  /**
   * Predict's answer: the node's PredictResponse bytes, passed through (see
   * {@link GatewayServiceServed}); for a writer that takes pieces, an answer
   * held decoded (an embedded node's) without its large tensors copied.
   */
  predict(req: PredictRequest, call: ServerSurfaceCall): Promise<Buffer>;
  predict(req: PredictRequest, call: ServerSurfaceCall, as: 'pieces'): Promise<MessageBytes>;
  predict(req: PredictRequest, call: ServerSurfaceCall, as?: 'pieces'): Promise<MessageBytes> {
    this.auth.authorize(call, 'predict');
    return as === 'pieces' ? this.router.predictWire(req, contextOf(call)) : this.router.predictEncoded(req, contextOf(call));
  }

  async modelMetadata(req: ModelMetadataRequest, call: ServerSurfaceCall): Promise<ModelMetadataResponse> {
    this.auth.authorize(call, 'predict');
    const v = await this.router.resolve(req, contextOf(call));
    return { model: v.model, version: v.version, inputs: v.inputs, outputs: v.outputs, runtime: v.runtime, state: v.state, sha256: v.sha256 };
  }

  /**
   * Models as the Open Inference Protocol's repository index shows them: one
   * entry per version loaded on some node (READY), and one without a version
   * (UNAVAILABLE) for a model loaded nowhere, which loads on its first request.
   */
  async repositoryIndex(readyOnly: boolean, call: ServerSurfaceCall): Promise<Array<{ name: string; version: string; state: string; reason: string }>> {
    this.auth.authorize(call, 'predict');
    const names: string[] = [];
    let pageToken = '';
    do {
      const page = await this.registry().listModels({ pageSize: 1000, pageToken }, { deadlineMs: callDeadlineMs(call) });
      names.push(...page.models.map((m) => m.name));
      pageToken = page.nextPageToken;
    } while (pageToken);
    const loaded = new Map<string, Set<number>>();
    for (const node of await this.listNodes()) for (const m of node.loaded) (loaded.get(m.model) ?? loaded.set(m.model, new Set()).get(m.model)!).add(m.version);
    return names.sort().flatMap((name) => {
      const versions = [...(loaded.get(name) ?? [])].sort((a, b) => a - b);
      if (versions.length > 0) return versions.map((v) => ({ name, version: String(v), state: 'READY', reason: '' }));
      return readyOnly ? [] : [{ name, version: '', state: 'UNAVAILABLE', reason: 'loaded on no node: it loads on its first request, or on RepositoryModelLoad' }];
    });
  }

  /** Loads the version a model serves (production, else latest READY) on its home nodes (admin). */
  async loadModel(name: string, call: ServerSurfaceCall): Promise<void> {
    this.auth.authorize(call, 'admin');
    const version = await this.router.resolve({ model: name, version: 0, alias: '' }, contextOf(call));
    const homes = this.router.homesOf(version.model, version.version);
    if (homes.length === 0) throw new UnavailableError(`no healthy inference node to load ${version.model}:${version.version} on`);
    await Promise.all(homes.map((node) => callUnary(node.client.loadModel.bind(node.client), { model: version.model, version: version.version }, { deadlineMs: callDeadlineMs(call) })));
  }

  /** Unloads every version of a model from every node that holds it (admin); it loads again on its next request. */
  async unloadModel(name: string, call: ServerSurfaceCall): Promise<void> {
    this.auth.authorize(call, 'admin');
    validateModelName(name);
    const holders = await Promise.all(
      this.pool.all().map(async (node) => ({ node, loaded: (await callUnary(node.client.listLoaded.bind(node.client), {}, { timeoutMs: 2000 })).models.filter((m) => m.model === name) })),
    );
    await Promise.all(
      holders.flatMap(({ node, loaded }) => loaded.map((m) => callUnary(node.client.unloadModel.bind(node.client), { model: m.model, version: m.version }, { deadlineMs: callDeadlineMs(call) }))),
    );
  }

  private async listNodes(): Promise<NodeInfo[]> {
    return Promise.all(
      this.pool.all().map(async (node): Promise<NodeInfo> => {
        const base = { id: node.instance.id, address: node.instance.address, tags: node.instance.tags, meta: node.instance.meta, inFlight: node.inFlight };
        try {
          const loaded = await callUnary(node.client.listLoaded.bind(node.client), {}, { timeoutMs: 2000 });
          return { ...base, loaded: loaded.models, error: '' };
        } catch (err) {
          return { ...base, loaded: [], error: (err as Error).message };
        }
      }),
    );
  }
}
