import { status, type Server, type ServerUnaryCall } from '@grpc/grpc-js';
import {
  kserve,
  VersionState,
  type ModelMetadataRequest,
  type ModelMetadataResponse,
  type PredictRequest,
  type PredictResponse,
} from '@maas/proto';
import { InvalidArgumentError, statusOf, unary, type ServerSurfaceCall } from '@maas/rpc';
import { fromModelInferRequest, parseV2Version, toModelInferResponse, toTensorMetadata } from './kserve-v2-codec';

/** What the Open Inference Protocol service needs from the gateway. */
export interface KserveBackend {
  /** Checks the caller's credentials for a scope; throws UNAUTHENTICATED / PERMISSION_DENIED / RESOURCE_EXHAUSTED. */
  authorize(call: ServerSurfaceCall, scope: 'predict' | 'admin'): void;
  /** Routes a prediction to a node, honouring the call's deadline and cancellation. */
  predict(request: PredictRequest, call: ServerSurfaceCall): Promise<PredictResponse>;
  /** Resolves a model reference and answers its signature. */
  modelMetadata(request: ModelMetadataRequest, call: ServerSurfaceCall): Promise<ModelMetadataResponse>;
  /** Whether the gateway can route predictions now (it sees at least one healthy node). */
  ready(): boolean;
}

/** Options of {@link KserveV2Service}. */
export interface KserveV2ServiceOptions {
  /** Reported by ServerMetadata. @default 'maas' */
  serverName?: string;
  /** Reported by ServerMetadata. @default the package version */
  serverVersion?: string;
}

const NOT_READY_CODES = new Set([status.NOT_FOUND, status.FAILED_PRECONDITION, status.UNAVAILABLE]);

/**
 * `inference.GRPCInferenceService`, the Open Inference Protocol (KServe V2),
 * served by the gateway on top of its own Predict and metadata paths.
 */
export class KserveV2Service {
  constructor(
    private readonly backend: KserveBackend,
    private readonly options: KserveV2ServiceOptions = {},
  ) {}

  addToServer(server: Server): void {
    server.addService(kserve.GRPCInferenceServiceService, this.handlers());
  }

  handlers(): kserve.GRPCInferenceServiceServer {
    return {
      serverLive: unary('ServerLive', async () => ({ live: true })),
      serverReady: unary('ServerReady', async () => ({ ready: this.backend.ready() })),
      modelReady: unary('ModelReady', (request: kserve.ModelReadyRequest, call) => this.modelReady(request, call)),
      serverMetadata: unary('ServerMetadata', async () => ({
        name: this.options.serverName ?? 'maas',
        version: this.options.serverVersion ?? '0.1.0',
        extensions: [],
      })),
      modelMetadata: unary('ModelMetadata', (request: kserve.ModelMetadataRequest, call) => this.modelMetadata(request, call)),
      modelInfer: unary('ModelInfer', (request: kserve.ModelInferRequest, call) => this.modelInfer(request, call)),
    };
  }

  private async modelReady(request: kserve.ModelReadyRequest, call: ServerUnaryCall<unknown, unknown>): Promise<kserve.ModelReadyResponse> {
    this.backend.authorize(call, 'predict');
    const maasRequest = this.metadataRequest(request.name, request.version);
    if (!this.backend.ready()) return { ready: false };
    try {
      const metadata = await this.backend.modelMetadata(maasRequest, call);
      return { ready: metadata.state === VersionState.VERSION_STATE_READY };
    } catch (err) {
      if (NOT_READY_CODES.has(statusOf(err))) return { ready: false };
      throw err;
    }
  }

  private async modelMetadata(
    request: kserve.ModelMetadataRequest,
    call: ServerUnaryCall<unknown, unknown>,
  ): Promise<kserve.ModelMetadataResponse> {
    this.backend.authorize(call, 'predict');
    const metadata = await this.backend.modelMetadata(this.metadataRequest(request.name, request.version), call);
    return {
      name: metadata.model,
      versions: [String(metadata.version)],
      platform: 'onnxruntime_onnx',
      inputs: metadata.inputs.map(toTensorMetadata),
      outputs: metadata.outputs.map(toTensorMetadata),
    };
  }

  private async modelInfer(request: kserve.ModelInferRequest, call: ServerUnaryCall<unknown, unknown>): Promise<kserve.ModelInferResponse> {
    this.backend.authorize(call, 'predict');
    const response = await this.backend.predict(fromModelInferRequest(request), call);
    return toModelInferResponse(request, response);
  }

  private metadataRequest(name: string, version: string): ModelMetadataRequest {
    if (!name) throw new InvalidArgumentError('name is empty: expected the name of a registered model');
    return { model: name, version: parseV2Version(version), alias: '' };
  }
}
