import { Metadata, type handleUnaryCall, type Server } from '@grpc/grpc-js';
import {
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
import { callDeadlineMs, callSignal, callUnary, unary, type ServerSurfaceCall } from '@maas/rpc';
import type { RegistryClient } from '@maas/registry-client';
import type { GatewayAuth } from './gateway-auth';
import type { NodePool } from './node-pool';
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
  return { deadline: callDeadlineMs(call), signal: callSignal(call), metadata };
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

  /** Predict's answer: the node's PredictResponse bytes, passed through (see {@link GatewayServiceServed}). */
  predict(req: PredictRequest, call: ServerSurfaceCall): Promise<Buffer> {
    this.auth.authorize(call, 'predict');
    return this.router.predictEncoded(req, contextOf(call));
  }

  async modelMetadata(req: ModelMetadataRequest, call: ServerSurfaceCall): Promise<ModelMetadataResponse> {
    this.auth.authorize(call, 'predict');
    const v = await this.router.resolve(req, contextOf(call));
    return { model: v.model, version: v.version, inputs: v.inputs, outputs: v.outputs, runtime: v.runtime, state: v.state, sha256: v.sha256 };
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
