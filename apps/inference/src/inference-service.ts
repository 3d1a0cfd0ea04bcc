import { Metadata, type Server } from '@grpc/grpc-js';
import {
  decodePredictRequest,
  encodePredictResponse,
  InferenceServiceWire,
  predictResponseSize,
  type InferenceServiceServer,
  type LoadedModel as LoadedModelInfo,
  type ModelMetadataRequest,
  type ModelMetadataResponse,
  type PredictRequest,
  type PredictResponse,
} from '@maas/proto';
import {
  callDeadlineMs,
  callCancellation,
  formatModelRef,
  InvalidArgumentError,
  MAX_MESSAGE_BYTES,
  QUEUE_MS_HEADER,
  RUN_MS_HEADER,
  NotFoundError,
  ResourceExhaustedError,
  unary,
  validateAlias,
  validateModelName,
  type CallObserver,
  type RawUnaryRoute,
  type ServerSurfaceCall,
} from '@maas/rpc';
import { validateInputs, validateOutputNames, type TensorLimits } from '@maas/tensor';
import type { LoadedModel } from './loaded-model';
import type { ModelManager, VersionSource } from './model-manager';

function describe(m: LoadedModel): LoadedModelInfo {
  return {
    model: m.version.model,
    version: m.version.version,
    sha256: m.version.sha256,
    memoryBytes: m.memoryBytes,
    inFlight: m.inFlight,
    queueDepth: m.batcher.queueDepth,
    lastUsedTime: new Date(m.lastUsed),
    loadTime: m.loadTime,
    batching: m.batching,
  };
}

/** `maas.v1.InferenceService`: thin handlers over the {@link ModelManager}. */
export class InferenceService {
  constructor(
    private readonly manager: ModelManager,
    private readonly versions: VersionSource,
    private readonly nodeId: () => string,
    private readonly limits: TensorLimits & {
      /** Largest answer message, as the server's send limit. @default MAX_MESSAGE_BYTES */
      maxMessageBytes?: number;
    } = {},
  ) {}

  addToServer(server: Server): void {
    server.addService(InferenceServiceWire, this.handlers());
  }

  /**
   * Predict served on the HTTP/2 stream directly (see GrpcServer.addRawUnary): the request decoded from the bytes
   * that arrived, the answer encoded once and written as it is, without grpc-js's per-call layers and its copy of
   * the answer into a framed message (1 MB per PP-OCRv4 answer).
   */
  predictRoute(observers: readonly CallObserver[]): RawUnaryRoute<PredictRequest> {
    return {
      path: InferenceServiceWire.predict.path,
      decode: decodePredictRequest,
      handle: async (req, call) => encodePredictResponse(await this.predict(req, call)),
      observers,
    };
  }

  handlers(): InferenceServiceServer {
    return {
      predict: unary('Predict', (req: PredictRequest, call) => this.predict(req, call)),
      modelMetadata: unary('ModelMetadata', (req: ModelMetadataRequest) => this.metadata(req)),
      loadModel: unary('LoadModel', async (req) => ({ model: describe(await this.manager.get(validateModelName(req.model), this.requireVersion(req.version))) })),
      unloadModel: unary('UnloadModel', async (req) => {
        const version = this.requireVersion(req.version);
        if (!(await this.manager.unload(validateModelName(req.model), version))) {
          throw new NotFoundError(`${req.model}:${version} is not loaded on this node`);
        }
        return {};
      }),
      listLoaded: unary('ListLoaded', async () => ({
        models: this.manager.list().map(describe),
        memoryBudgetBytes: this.manager.memoryBudgetBytes,
        memoryUsedBytes: this.manager.memoryUsedBytes,
        nodeId: this.nodeId(),
      })),
    };
  }

  private async predict(req: PredictRequest, call: ServerSurfaceCall & { sendMetadata(metadata: Metadata): void }): Promise<PredictResponse> {
    if (req.sha256 !== '' && !/^[0-9a-f]{64}$/.test(req.sha256)) {
      throw new InvalidArgumentError(`sha256 ${JSON.stringify(req.sha256.slice(0, 80))} is invalid: expected 64 lower-case hex digits, or empty`);
    }
    const version = await this.versionOf(req.model, req.version, req.alias);
    const loaded = await this.manager.get(req.model, version, req.sha256);
    validateInputs(req.inputs, loaded.version.inputs, this.limits);
    const outputNames = validateOutputNames(req.outputNames, loaded.version.outputs);
    let queueMs = 0;
    let runStarted = 0;
    const outputs = await loaded.predict(req.inputs, outputNames, {
      signal: callCancellation(call),
      deadline: callDeadlineMs(call),
      onRun: (ms) => {
        queueMs = ms;
        runStarted = performance.now();
      },
    });
    const runMs = runStarted > 0 ? performance.now() - runStarted : 0;
    const answer = { model: req.model, version, outputs };
    // Said here, with the figures, rather than as grpc-js's bare "Sent message larger than max".
    const size = predictResponseSize(answer);
    const limit = this.limits.maxMessageBytes ?? MAX_MESSAGE_BYTES;
    if (size > limit) {
      throw new ResourceExhaustedError(
        `the answer of ${req.model}:${version} is ${size} bytes, above the node's message limit of ${limit} bytes (INFERENCE_MAX_MESSAGE_BYTES): request fewer rows or outputs`,
      );
    }
    // How long it queued and ran here, in the answer's headers: the gateway tells a busy node from a slow
    // one by the first, and keeps both in the protocol's model statistics.
    const headers = new Metadata();
    headers.set(QUEUE_MS_HEADER, queueMs.toFixed(1));
    headers.set(RUN_MS_HEADER, runMs.toFixed(1));
    call.sendMetadata(headers);
    return answer;
  }

  private async metadata(req: ModelMetadataRequest): Promise<ModelMetadataResponse> {
    const version = await this.versionOf(req.model, req.version, req.alias);
    const v = this.manager.find(req.model, version)?.version ?? (await this.versions.getVersion(req.model, version));
    return { model: v.model, version: v.version, inputs: v.inputs, outputs: v.outputs, runtime: v.runtime, state: v.state, sha256: v.sha256 };
  }

  /** The explicit version, or the one the alias (default `production`, else latest) resolves to. */
  private async versionOf(model: string, version: number, alias: string): Promise<number> {
    validateModelName(model);
    if (version > 0 && alias) throw new InvalidArgumentError('give a version or an alias, not both');
    if (version > 0) return version;
    if (alias) validateAlias(alias);
    return (await this.versions.resolve(formatModelRef({ model, version: 0, alias }))).version;
  }

  private requireVersion(version: number): number {
    if (!Number.isInteger(version) || version < 1) throw new InvalidArgumentError(`version ${version} is invalid: expected a positive integer`);
    return version;
  }
}
