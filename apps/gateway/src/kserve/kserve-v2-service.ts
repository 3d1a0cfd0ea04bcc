import { status, type Server, type ServerDuplexStream } from '@grpc/grpc-js';
import {
  kserve,
  VersionState,
  type ModelMetadataRequest,
  type ModelMetadataResponse,
  type PredictRequest,
  type PredictResponse,
} from '@maas/proto';
import { InvalidArgumentError, statusOf, toServerError, unary, type ServerSurfaceCall } from '@maas/rpc';
import type { Duration, ModelStatistics } from '../model-statistics';
import { fromModelInferRequest, parseV2Version, refuseParameters, toModelConfig, toModelInferResponse, toTensorMetadata } from './kserve-v2-codec';

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
  /** What the gateway has counted of the inferences it routed. */
  statistics: ModelStatistics;
  /** The models, and which of their versions some node has loaded (checks the predict scope). */
  repositoryIndex(readyOnly: boolean, call: ServerSurfaceCall): Promise<kserve.RepositoryIndexResponse_ModelIndex[]>;
  /** Loads a model's serving version on its home nodes (checks the admin scope). */
  loadModel(name: string, call: ServerSurfaceCall): Promise<void>;
  /** Unloads a model from every node (checks the admin scope). */
  unloadModel(name: string, call: ServerSurfaceCall): Promise<void>;
}

/** Options of {@link KserveV2Service}. */
export interface KserveV2ServiceOptions {
  /** Reported by ServerMetadata. @default 'maas' */
  serverName?: string;
  /** Reported by ServerMetadata. @default the package version */
  serverVersion?: string;
  /** Whether the REST side is served, so ServerMetadata lists binary_tensor_data (an HTTP extension). @default true */
  rest?: boolean;
}

const NOT_READY_CODES = new Set([status.NOT_FOUND, status.FAILED_PRECONDITION, status.UNAVAILABLE]);

/** Triton's names of the protocol extensions this server answers (ServerMetadata lists them). */
export const SUPPORTED_EXTENSIONS = ['model_repository', 'model_repository(unload_dependents)', 'model_configuration', 'statistics', 'binary_tensor_data'];
/** The extension only the REST side has. */
const REST_ONLY = 'binary_tensor_data';

const none = (): Duration => ({ count: 0, ns: 0 });

function modelNameOf(name: string): string {
  if (!name) throw new InvalidArgumentError('model_name is empty: expected the name of a registered model');
  return name;
}
const duration = (d: Duration): kserve.StatisticDuration => ({ count: BigInt(d.count), ns: BigInt(d.ns) });

/** Requests of one ModelStreamInfer stream running at once; the stream is read no further meanwhile. */
const STREAM_IN_FLIGHT = 64;

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
      serverReady: unary('ServerReady', async () => this.serverReady()),
      modelReady: unary('ModelReady', (request: kserve.ModelReadyRequest, call) => this.modelReady(request, call)),
      serverMetadata: unary('ServerMetadata', async () => this.serverMetadata()),
      modelMetadata: unary('ModelMetadata', (request: kserve.ModelMetadataRequest, call) => this.modelMetadata(request, call)),
      modelInfer: unary('ModelInfer', (request: kserve.ModelInferRequest, call) => this.modelInfer(request, call)),
      modelConfig: unary('ModelConfig', (request: kserve.ModelConfigRequest, call) => this.modelConfig(request, call)),
      modelStreamInfer: (call) => this.modelStreamInfer(call),
      modelStatistics: unary('ModelStatistics', (request: kserve.ModelStatisticsRequest, call) => this.modelStatistics(request, call)),
      repositoryIndex: unary('RepositoryIndex', (request: kserve.RepositoryIndexRequest, call) => this.repositoryIndex(request, call)),
      repositoryModelLoad: unary('RepositoryModelLoad', (request: kserve.RepositoryModelLoadRequest, call) => this.repositoryModelLoad(request, call)),
      repositoryModelUnload: unary('RepositoryModelUnload', (request: kserve.RepositoryModelUnloadRequest, call) => this.repositoryModelUnload(request, call)),
    };
  }

  serverReady(): kserve.ServerReadyResponse {
    return { ready: this.backend.ready() };
  }

  serverMetadata(): kserve.ServerMetadataResponse {
    const rest = this.options.rest ?? true;
    return { name: this.options.serverName ?? 'maas', version: this.options.serverVersion ?? '0.1.0', extensions: SUPPORTED_EXTENSIONS.filter((e) => rest || e !== REST_ONLY) };
  }

  async repositoryIndex(request: kserve.RepositoryIndexRequest, call: ServerSurfaceCall): Promise<kserve.RepositoryIndexResponse> {
    return { models: await this.backend.repositoryIndex(request.ready, call) };
  }

  async repositoryModelLoad(request: kserve.RepositoryModelLoadRequest, call: ServerSurfaceCall): Promise<kserve.RepositoryModelLoadResponse> {
    refuseParameters('RepositoryModelLoad', request.parameters, 'a model loads what the registry holds (upload a version to change its files or configuration)');
    await this.backend.loadModel(modelNameOf(request.modelName), call);
    return {};
  }

  /** `unload_dependents` (Triton's client always sends it) is honoured trivially: no model here depends on another. */
  async repositoryModelUnload(request: kserve.RepositoryModelUnloadRequest, call: ServerSurfaceCall): Promise<kserve.RepositoryModelUnloadResponse> {
    const { unload_dependents: dependents, ...others } = request.parameters;
    if (dependents && dependents.parameterChoice?.$case !== 'boolParam') throw new InvalidArgumentError('RepositoryModelUnload: parameter "unload_dependents" must be a bool_param');
    refuseParameters('RepositoryModelUnload', others, 'it takes only "unload_dependents"');
    await this.backend.unloadModel(modelNameOf(request.modelName), call);
    return {};
  }

  /**
   * The statistics this gateway kept. A model (or version) it has routed
   * nothing for yet answers zeros once it is known to exist, NOT_FOUND
   * otherwise.
   */
  async modelStatistics(request: kserve.ModelStatisticsRequest, call: ServerSurfaceCall): Promise<kserve.ModelStatisticsResponse> {
    this.backend.authorize(call, 'predict');
    const version = parseV2Version(request.version);
    let kept = this.backend.statistics.query(request.name, version);
    if (request.name && kept.length === 0) {
      const metadata = await this.backend.modelMetadata(this.metadataRequest(request.name, request.version), call);
      kept = [{ model: metadata.model, version: metadata.version, lastInference: 0, inferenceCount: 0, executionCount: 0, success: none(), fail: none(), queue: none(), computeInfer: none() }];
    }
    return {
      modelStats: kept.map((s) => ({
        name: s.model,
        version: String(s.version),
        lastInference: BigInt(s.lastInference),
        inferenceCount: BigInt(s.inferenceCount),
        executionCount: BigInt(s.executionCount),
        inferenceStats: {
          success: duration(s.success),
          fail: duration(s.fail),
          queue: duration(s.queue),
          computeInput: duration(none()),
          computeInfer: duration(s.computeInfer),
          computeOutput: duration(none()),
        },
        batchStats: [],
      })),
    };
  }

  async modelConfig(request: kserve.ModelConfigRequest, call: ServerSurfaceCall): Promise<kserve.ModelConfigResponse> {
    this.backend.authorize(call, 'predict');
    return { config: toModelConfig(await this.backend.modelMetadata(this.metadataRequest(request.name, request.version), call)) };
  }

  /**
   * Many inferences over one stream. Each request is authorised (so rate
   * limits count inferences) and run as ModelInfer would be, up to
   * {@link STREAM_IN_FLIGHT} at once; each answer carries its request's id,
   * and a request that fails answers its error in `error_message` without
   * ending the stream. The stream's deadline and cancellation reach every
   * request in it; the stream ends once the client has finished sending and
   * every answer is written.
   */
  private modelStreamInfer(call: ServerDuplexStream<kserve.ModelInferRequest, kserve.ModelStreamInferResponse>): void {
    let inFlight = 0;
    let ended = false;
    const finishIfDone = () => {
      if (ended && inFlight === 0 && !call.cancelled) call.end();
    };
    call.on('data', (request: kserve.ModelInferRequest) => {
      inFlight += 1;
      if (inFlight >= STREAM_IN_FLIGHT) call.pause();
      const answer = (message: kserve.ModelStreamInferResponse) => {
        inFlight -= 1;
        if (!call.cancelled) call.write(message);
        if (inFlight < STREAM_IN_FLIGHT && call.isPaused()) call.resume();
        finishIfDone();
      };
      new Promise<kserve.ModelInferResponse>((resolve) => {
        this.backend.authorize(call, 'predict');
        resolve(this.backend.predict(fromModelInferRequest(request), call).then((response) => toModelInferResponse(request, response)));
      }).then(
        (response) => answer({ errorMessage: '', inferResponse: response }),
        (err: unknown) => {
          const mapped = toServerError(err, 'ModelStreamInfer');
          const name = status[mapped.code ?? status.UNKNOWN] ?? 'UNKNOWN';
          // The request's id travels with its error, so the client knows which one failed.
          answer({ errorMessage: `${name}: ${mapped.details}`, inferResponse: request.id ? kserve.ModelInferResponse.fromPartial({ id: request.id, modelName: request.modelName, modelVersion: request.modelVersion }) : undefined });
        },
      );
    });
    call.on('end', () => {
      ended = true;
      finishIfDone();
    });
    call.on('error', () => undefined);
  }

  async modelReady(request: kserve.ModelReadyRequest, call: ServerSurfaceCall): Promise<kserve.ModelReadyResponse> {
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

  async modelMetadata(
    request: kserve.ModelMetadataRequest,
    call: ServerSurfaceCall,
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

  async modelInfer(request: kserve.ModelInferRequest, call: ServerSurfaceCall): Promise<kserve.ModelInferResponse> {
    this.backend.authorize(call, 'predict');
    const response = await this.backend.predict(fromModelInferRequest(request), call);
    return toModelInferResponse(request, response);
  }

  private metadataRequest(name: string, version: string): ModelMetadataRequest {
    if (!name) throw new InvalidArgumentError('name is empty: expected the name of a registered model');
    return { model: name, version: parseV2Version(version), alias: '' };
  }
}
