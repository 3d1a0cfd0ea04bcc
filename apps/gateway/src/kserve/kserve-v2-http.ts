import { EventEmitter } from 'node:events';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createGunzip, createInflate } from 'node:zlib';
import type { Readable } from 'node:stream';
import { Metadata, status } from '@grpc/grpc-js';
import { triton, type kserve } from '@maas/proto';
import { InvalidArgumentError, MaasError, NotFoundError, toServerError, type ServerSurfaceCall } from '@maas/rpc';
import { REQUEST_ID_HEADER, type Logger } from '@maas/observability';
import type { Admission } from '../admission';
import { GATEWAY_ADMISSION_KEY } from '../intake-shedding';
import type { KserveV2Service } from './kserve-v2-service';
import { encodeInferResponse, HEADER_LENGTH, parseInferRequest, parseJson } from './kserve-v2-json';

/** HTTP status of each gRPC status code (as google.rpc.Code documents them). */
const HTTP_STATUS: Record<number, number> = {
  [status.OK]: 200,
  [status.CANCELLED]: 499,
  [status.UNKNOWN]: 500,
  [status.INVALID_ARGUMENT]: 400,
  [status.DEADLINE_EXCEEDED]: 504,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.PERMISSION_DENIED]: 403,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.FAILED_PRECONDITION]: 400,
  [status.ABORTED]: 409,
  [status.OUT_OF_RANGE]: 400,
  [status.UNIMPLEMENTED]: 501,
  [status.INTERNAL]: 500,
  [status.UNAVAILABLE]: 503,
  [status.DATA_LOSS]: 500,
  [status.UNAUTHENTICATED]: 401,
};

/** The HTTP status a gRPC status code maps to. */
export function httpStatusOf(code: status): number {
  return HTTP_STATUS[code] ?? 500;
}

/**
 * An over-limit body up to this many bytes is read to its end, and dropped,
 * before the 413 goes out: a client that reads no answer while it is still
 * sending (Python's urllib) otherwise meets a closed connection instead of
 * the 413. Past it the answer goes at once and the connection is closed.
 */
const DRAIN_MAX_BYTES = 64 * 1024 ** 2;

/** Reads and drops the rest of a request body, until its end or `upTo` more bytes. */
function drain(req: IncomingMessage, upTo: number): Promise<void> {
  return new Promise((resolve) => {
    let seen = 0;
    const done = () => {
      req.off('data', onData);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      seen += chunk.length;
      if (seen > upTo) done();
    };
    if (req.readableEnded || req.destroyed) return resolve();
    req.on('data', onData);
    req.once('end', done);
    req.once('close', done);
    req.once('error', done);
    req.resume();
  });
}

class PayloadTooLargeError extends MaasError {
  constructor(message: string) {
    super(status.RESOURCE_EXHAUSTED, message);
  }
}

class MethodNotAllowedError extends MaasError {
  constructor(
    readonly allow: string,
    message: string,
  ) {
    super(status.UNIMPLEMENTED, message);
  }
}

class UnimplementedError extends MaasError {
  constructor(message: string) {
    super(status.UNIMPLEMENTED, message);
  }
}

/**
 * An HTTP request in the shape the gRPC handlers take: its headers as
 * metadata (`authorization`, `x-request-id`), no deadline (the gateway's
 * default applies), cancelled when the client goes away before the answer.
 */
class HttpCall extends EventEmitter implements ServerSurfaceCall {
  cancelled = false;
  readonly metadata = new Metadata();

  constructor(
    private readonly req: IncomingMessage,
    res: ServerResponse,
  ) {
    super();
    for (const name of ['authorization', REQUEST_ID_HEADER]) {
      const value = req.headers[name];
      if (typeof value === 'string') this.metadata.set(name, value);
    }
    res.once('close', () => {
      if (res.writableFinished) return;
      this.cancelled = true;
      this.emit('cancelled');
    });
  }

  getDeadline(): number {
    return Infinity;
  }

  getPeer(): string {
    return `${this.req.socket.remoteAddress}:${this.req.socket.remotePort}`;
  }
}

/** Options of {@link KserveV2Http}. */
export interface KserveV2HttpOptions {
  service: KserveV2Service;
  /** The gateway's intake admission, shared with gRPC inference calls. */
  admission: Admission;
  /** Largest request body (after decompression), in bytes; a bigger one is 413. */
  maxBodyBytes: number;
  /** Certificate and key (PEM) for HTTPS, with client certificates verified against `ca` when `requestCert`. */
  tls?: { cert: Buffer; key: Buffer; ca?: Buffer; requestCert: boolean };
  logger?: Logger;
}

type Route = (call: HttpCall, body: () => Promise<Buffer>, req: IncomingMessage) => Promise<Answer>;
type Answer = { status: number; json?: string; binary?: Buffer[] };

const ok = (value: unknown): Answer => ({ status: 200, json: JSON.stringify(value) });
const bigs = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? Number(v) : v)));

/** The paths of Triton's extensions this server does not serve, each answered 501 with the reason. */
const UNSUPPORTED: Array<[RegExp, string]> = [
  [/^\/v2\/(system|cuda)sharedmemory(\/|$)/, 'shared-memory tensors are not supported: send tensors in the request body (JSON or binary data)'],
  [/^\/v2(\/models\/[^/]+(\/versions\/[^/]+)?)?\/trace\/setting$/, 'trace settings are not supported: the gateway exports Prometheus metrics and structured logs'],
  [/^\/v2\/logging$/, 'log settings are not supported: set LOG_LEVEL when starting the gateway'],
  [/^\/v2\/models\/[^/]+(\/versions\/[^/]+)?\/generate(_stream)?$/, 'the generate extension is not supported: use /infer'],
];

/**
 * The REST side of the Open Inference Protocol (KServe V2, with Triton's
 * binary-data, model-configuration, statistics and repository extensions)
 * on the gateway. Each route runs the same handler as its gRPC call, so API
 * keys, rate limits, admission and errors are the same; errors answer
 * `{"error": "..."}` with the HTTP status of their gRPC code.
 */
export class KserveV2Http {
  private readonly server: Server;
  private readonly routes: Array<{ method: string; path: RegExp; run: (match: RegExpExecArray) => Route }>;

  constructor(private readonly options: KserveV2HttpOptions) {
    const service = options.service;
    const model = '/v2/models/([^/]+)(?:/versions/([^/]+))?';
    const name = (m: RegExpExecArray) => decodeURIComponent(m[1]);
    const version = (m: RegExpExecArray) => (m[2] === undefined ? '' : decodeURIComponent(m[2]));
    this.routes = [
      { method: 'GET', path: /^\/v2\/health\/live$/, run: () => async () => ({ status: 200 }) },
      { method: 'GET', path: /^\/v2\/health\/ready$/, run: () => async () => ({ status: service.serverReady().ready ? 200 : 400 }) },
      { method: 'GET', path: /^\/v2$/, run: () => async () => ok(service.serverMetadata()) },
      { method: 'GET', path: /^\/v2\/models\/stats$/, run: () => async (call) => ok(statisticsJson(await service.modelStatistics({ name: '', version: '' }, call))) },
      { method: 'POST', path: /^\/v2\/repository\/index$/, run: () => (call, body) => this.repositoryIndex(call, body) },
      {
        method: 'POST',
        path: /^\/v2\/repository\/models\/([^/]+)\/(load|unload)$/,
        run: (m) => (call, body) => this.repositoryChange(name(m), m[2] as 'load' | 'unload', call, body),
      },
      { method: 'GET', path: new RegExp(`^${model}$`), run: (m) => async (call) => ok(bigs(await service.modelMetadata({ name: name(m), version: version(m) }, call))) },
      {
        method: 'GET',
        path: new RegExp(`^${model}/ready$`),
        run: (m) => async (call) => ({ status: (await service.modelReady({ name: name(m), version: version(m) }, call)).ready ? 200 : 400 }),
      },
      { method: 'GET', path: new RegExp(`^${model}/config$`), run: (m) => async (call) => ok(configJson((await service.modelConfig({ name: name(m), version: version(m) }, call)).config)) },
      { method: 'GET', path: new RegExp(`^${model}/stats$`), run: (m) => async (call) => ok(statisticsJson(await service.modelStatistics({ name: name(m), version: version(m) }, call))) },
      { method: 'POST', path: new RegExp(`^${model}/infer$`), run: (m) => (call, body, req) => this.infer(name(m), version(m), call, body, req) },
    ];
    const handler = (req: IncomingMessage, res: ServerResponse) => void this.handle(req, res);
    this.server = options.tls
      ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key, ca: options.tls.ca, requestCert: options.tls.requestCert, rejectUnauthorized: options.tls.requestCert }, handler)
      : createHttpServer(handler);
    // Bodies are read in full before a handler runs; a client stalling mid-body is cut off.
    this.server.requestTimeout = 5 * 60_000;
    this.server.headersTimeout = 30_000;
  }

  async listen(host: string, port: number): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return (this.server.address() as AddressInfo).port;
  }

  /** Stops taking connections; requests under way get `graceMs` to finish, then their connections are closed. */
  async shutdown(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    const timer = setTimeout(() => this.server.closeAllConnections(), graceMs);
    timer.unref();
    await closed;
    clearTimeout(timer);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const call = new HttpCall(req, res);
    let answer: Answer;
    try {
      answer = await this.route(req, call);
    } catch (err) {
      answer = this.errorAnswer(err, req);
      if (err instanceof MethodNotAllowedError) res.setHeader('allow', err.allow);
    }
    if (call.cancelled) return;
    const headers: Record<string, string | number> = {};
    let body: Buffer | string = '';
    if (answer.json !== undefined && answer.binary?.length) {
      const head = Buffer.from(answer.json, 'utf8');
      headers['content-type'] = 'application/octet-stream';
      headers[HEADER_LENGTH] = head.length;
      body = Buffer.concat([head, ...answer.binary]);
    } else if (answer.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = answer.json;
    }
    headers['content-length'] = Buffer.byteLength(body);
    res.writeHead(answer.status, headers).end(body);
  }

  private async route(req: IncomingMessage, call: HttpCall): Promise<Answer> {
    const path = (req.url ?? '/').split('?')[0];
    const allowed: string[] = [];
    for (const route of this.routes) {
      const match = route.path.exec(path);
      if (!match) continue;
      if (req.method === route.method || (req.method === 'HEAD' && route.method === 'GET')) return route.run(match)(call, () => this.readBody(req), req);
      allowed.push(route.method);
    }
    if (allowed.length > 0) throw new MethodNotAllowedError(allowed.join(', '), `${req.method} is not served on ${path}: use ${allowed.join(' or ')}`);
    const unsupported = UNSUPPORTED.find(([pattern]) => pattern.test(path));
    if (unsupported) throw new UnimplementedError(`${path}: ${unsupported[1]}`);
    throw new NotFoundError(`no route ${path}: this server answers the Open Inference Protocol under /v2 (health, models, repository); see the README's protocol section`);
  }

  private errorAnswer(err: unknown, req: IncomingMessage): Answer {
    if (err instanceof MethodNotAllowedError) return { status: 405, json: JSON.stringify({ error: err.message }) };
    if (err instanceof PayloadTooLargeError) return { status: 413, json: JSON.stringify({ error: err.message }) };
    const mapped = toServerError(err, `HTTP ${req.method} ${(req.url ?? '/').split('?')[0]}`);
    const code = mapped.code ?? status.UNKNOWN;
    if (code === status.INTERNAL || code === status.UNKNOWN) this.options.logger?.warn({ err: mapped.details, url: req.url }, 'REST call failed');
    return { status: httpStatusOf(code), json: JSON.stringify({ error: mapped.details }) };
  }

  /** The whole body, decompressed per Content-Encoding, up to the size limit. */
  private async readBody(req: IncomingMessage): Promise<Buffer> {
    const limit = this.options.maxBodyBytes;
    const declared = Number(req.headers['content-length'] ?? 0);
    const tooLarge = (n: number | string) =>
      new PayloadTooLargeError(`the request body is ${n} bytes, above this gateway's limit of ${limit} (GATEWAY_MAX_MESSAGE_BYTES); send a smaller request`);
    if (declared > limit) {
      await drain(req, DRAIN_MAX_BYTES);
      throw tooLarge(declared);
    }
    const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
    let source: NodeJS.ReadableStream = req;
    if (encoding === 'gzip') source = req.pipe(createGunzip());
    else if (encoding === 'deflate') source = req.pipe(createInflate());
    else if (encoding !== 'identity') {
      req.resume();
      throw new InvalidArgumentError(`Content-Encoding "${encoding}" is not supported: expected gzip, deflate or none`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      // Leaving the loop early must not destroy the request: the rest is drained so the 413 can be read.
      for await (const chunk of (source as Readable).iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > limit) {
          if (source !== req) req.unpipe();
          await drain(req, DRAIN_MAX_BYTES);
          throw tooLarge(`over ${limit}`);
        }
        chunks.push(chunk);
      }
    } catch (err) {
      if (err instanceof MaasError) throw err;
      throw new InvalidArgumentError(`the request body could not be read${encoding === 'identity' ? '' : ` as ${encoding}`}: ${(err as Error).message}`);
    }
    return Buffer.concat(chunks, size);
  }

  private async infer(model: string, version: string, call: HttpCall, body: () => Promise<Buffer>, req: IncomingMessage): Promise<Answer> {
    // The cheap gate first, as for gRPC: an overloaded gateway refuses before reading the body.
    this.options.admission.admit(GATEWAY_ADMISSION_KEY, Infinity);
    let answered = false;
    try {
      const lengthHeader = req.headers[HEADER_LENGTH];
      let headerLength: number | undefined;
      if (typeof lengthHeader === 'string') {
        if (!/^\d{1,15}$/.test(lengthHeader.trim())) throw new InvalidArgumentError(`Inference-Header-Content-Length is "${lengthHeader}": expected the byte length of the JSON header`);
        headerLength = Number(lengthHeader);
      }
      const parsed = parseInferRequest(model, version, await body(), headerLength);
      const response = await this.options.service.modelInfer(parsed.request, call);
      const encoded = encodeInferResponse(response, parsed.binaryOutput);
      answered = true;
      return { status: 200, json: encoded.json, binary: encoded.binary };
    } finally {
      this.options.admission.done(GATEWAY_ADMISSION_KEY, answered);
    }
  }

  private async repositoryIndex(call: HttpCall, body: () => Promise<Buffer>): Promise<Answer> {
    const request = await jsonBody(await body(), 'the repository index request');
    const ready = request.ready;
    if (ready !== undefined && typeof ready !== 'boolean') throw new InvalidArgumentError(`"ready" is ${JSON.stringify(ready)}: expected true or false`);
    const index = await this.options.service.repositoryIndex({ repositoryName: '', ready: ready ?? false }, call);
    return ok(index.models.map((m) => ({ name: m.name, version: m.version, state: m.state, reason: m.reason })));
  }

  private async repositoryChange(model: string, action: 'load' | 'unload', call: HttpCall, body: () => Promise<Buffer>): Promise<Answer> {
    const request = await jsonBody(await body(), `the ${action} request`);
    const parameters: Record<string, kserve.ModelRepositoryParameter> = {};
    if (request.parameters !== undefined) {
      if (typeof request.parameters !== 'object' || request.parameters === null || Array.isArray(request.parameters)) {
        throw new InvalidArgumentError('"parameters" must be an object');
      }
      for (const [key, value] of Object.entries(request.parameters)) {
        if (typeof value === 'boolean') parameters[key] = { parameterChoice: { $case: 'boolParam', value } };
        else parameters[key] = { parameterChoice: { $case: 'stringParam', value: JSON.stringify(value) } };
      }
    }
    if (action === 'load') await this.options.service.repositoryModelLoad({ repositoryName: '', modelName: model, parameters }, call);
    else await this.options.service.repositoryModelUnload({ repositoryName: '', modelName: model, parameters }, call);
    return { status: 200 };
  }
}

/** A JSON object body; an empty body is an empty object. */
async function jsonBody(body: Buffer, what: string): Promise<Record<string, unknown>> {
  if (body.length === 0 || body.toString('utf8').trim() === '') return {};
  const value = parseJson(body.toString('utf8'), what);
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new InvalidArgumentError(`${what} must be a JSON object`);
  return value as Record<string, unknown>;
}

const durationJson = (d: kserve.StatisticDuration | undefined) => ({ count: Number(d?.count ?? 0), ns: Number(d?.ns ?? 0) });

/** Statistics as Triton's REST API answers them (snake_case, numbers). */
function statisticsJson(response: kserve.ModelStatisticsResponse): unknown {
  return {
    model_stats: response.modelStats.map((s) => ({
      name: s.name,
      version: s.version,
      last_inference: Number(s.lastInference),
      inference_count: Number(s.inferenceCount),
      execution_count: Number(s.executionCount),
      inference_stats: {
        success: durationJson(s.inferenceStats?.success),
        fail: durationJson(s.inferenceStats?.fail),
        queue: durationJson(s.inferenceStats?.queue),
        compute_input: durationJson(s.inferenceStats?.computeInput),
        compute_infer: durationJson(s.inferenceStats?.computeInfer),
        compute_output: durationJson(s.inferenceStats?.computeOutput),
      },
      batch_stats: [],
    })),
  };
}

/** A model configuration as Triton's REST API answers it (snake_case, enum names, numbers). */
function configJson(config: kserve.ModelConfigResponse['config']): unknown {
  if (!config) return {};
  const tensor = (t: { name: string; dataType: number; dims: bigint[] }) => ({ name: t.name, data_type: triton.dataTypeToJSON(t.dataType), dims: t.dims.map(Number) });
  const batching = config.schedulingChoice?.$case === 'dynamicBatching' ? config.schedulingChoice.value : undefined;
  return {
    name: config.name,
    platform: config.platform,
    backend: config.backend,
    max_batch_size: config.maxBatchSize,
    input: config.input.map(tensor),
    output: config.output.map(tensor),
    ...(batching ? { dynamic_batching: { preferred_batch_size: batching.preferredBatchSize, max_queue_delay_microseconds: Number(batching.maxQueueDelayMicroseconds) } } : {}),
    instance_group: config.instanceGroup.map((g) => ({ name: g.name, count: g.count, kind: triton.modelInstanceGroup_KindToJSON(g.kind) })),
  };
}
