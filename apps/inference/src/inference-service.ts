import { EventEmitter } from 'node:events';
import { Metadata, type Server } from '@grpc/grpc-js';
import {
  decodePredictRequest,
  encodePredictResponsePieces,
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
  DeadlineExceededError,
  formatModelRef,
  InvalidArgumentError,
  MAX_MESSAGE_BYTES,
  QUEUE_MS_HEADER,
  RUN_MS_HEADER,
  NotFoundError,
  ResourceExhaustedError,
  callFailure,
  callStatusOf,
  unary,
  headerMsOf,
  type CancelSignal,
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

/** What an in-process Predict carries in place of a call's headers. */
export interface InProcessCallOptions {
  /** Epoch ms; Infinity for none. */
  deadline: number;
  signal: CancelSignal;
  metadata?: Metadata;
}

/** An in-process Predict's answer: the PredictResponse, not encoded (the caller encodes what it sends on), and the figures a node's headers carry. */
export interface InProcessAnswer {
  response: PredictResponse;
  queueMs: number;
  runMs: number;
}

/** The call surface an in-process Predict gives the handler: cancellation from the caller's signal, its deadline enforced here. */
class InProcessCall extends EventEmitter {
  cancelled = false;
  readonly metadata: Metadata;
  readonly headers = new Metadata();
  /** Rejects with DEADLINE_EXCEEDED at the deadline (the work is cancelled then too). */
  readonly expiry: Promise<never>;
  private timer?: NodeJS.Timeout;
  private readonly onAbort = () => this.cancel();

  constructor(private readonly opts: InProcessCallOptions) {
    super();
    this.metadata = opts.metadata ?? new Metadata();
    this.expiry = new Promise<never>((_, reject) => {
      if (!Number.isFinite(opts.deadline)) return;
      this.timer = setTimeout(() => {
        reject(new DeadlineExceededError('Deadline exceeded'));
        this.cancel();
      }, Math.max(0, opts.deadline - Date.now()));
    });
    this.expiry.catch(() => undefined);
    if (opts.signal.aborted) this.cancelled = true;
    else opts.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  getDeadline(): number {
    return this.opts.deadline;
  }

  getPeer(): string {
    return 'in-process';
  }

  sendMetadata(metadata: Metadata): void {
    this.headers.merge(metadata);
  }

  /** The call is over: no timer, no listener left behind. */
  end(): void {
    clearTimeout(this.timer);
    this.opts.signal.removeEventListener('abort', this.onAbort);
  }

  private cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancelled');
  }
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
      // Large outputs go out as the memory onnxruntime's run handed over, not copied into the message first.
      handle: async (req, call) => encodePredictResponsePieces(await this.predict(req, call)),
      observers,
    };
  }

  /**
   * Predict called from this process (a gateway with the node embedded):
   * the same checks, batching and answer as over the wire, without a
   * transport. Rejects as a gRPC client would: an Error with `code`,
   * `details` and trailers as `metadata`.
   */
  async predictInProcess(req: PredictRequest, opts: InProcessCallOptions): Promise<InProcessAnswer> {
    const call = new InProcessCall(opts);
    try {
      const response = await Promise.race([this.predict(req, call), call.expiry]);
      return { response, queueMs: headerMsOf(call.headers, QUEUE_MS_HEADER), runMs: headerMsOf(call.headers, RUN_MS_HEADER) };
    } catch (err) {
      const answer = callStatusOf(err, 'Predict');
      throw callFailure(answer.code, answer.details, answer.metadata ?? undefined);
    } finally {
      call.end();
    }
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
