import { once } from 'node:events';
import type { Server, ServerReadableStream, ServerWritableStream } from '@grpc/grpc-js';
import {
  RegistryServiceService,
  type DownloadVersionRequest,
  type DownloadVersionResponse,
  type ModelVersion,
  type RegistryServiceServer,
  type UploadMetadata,
  type UploadVersionRequest,
} from '@maas/proto';
import { CancelledError, DeadlineExceededError, InvalidArgumentError, ResourceExhaustedError, callSignal, clientStreaming, parseModelRef, serverStreaming, unary } from '@maas/rpc';
import type { Registry } from './registry';

/** Download chunk size bounds, in bytes. */
export const DEFAULT_CHUNK_BYTES = 256 * 1024;
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024;
const MIN_CHUNK_BYTES = 1024;

/**
 * Reads an upload stream: exactly one metadata message first, then chunks.
 * A stream that sends nothing for `idleMs` is cut, so an idle client cannot
 * hold a file and a staging folder forever.
 */
async function splitUpload(call: ServerReadableStream<UploadVersionRequest, ModelVersion>, idleMs: number) {
  const stream = call[Symbol.asyncIterator]() as AsyncIterator<UploadVersionRequest>;
  const messages = {
    next(): Promise<IteratorResult<UploadVersionRequest>> {
      const timer = setTimeout(() => call.destroy(new DeadlineExceededError(`upload sent nothing for ${idleMs} ms (REGISTRY_UPLOAD_IDLE_MS): cut, nothing was stored`)), idleMs);
      return stream.next().finally(() => clearTimeout(timer));
    },
  };
  const first = await messages.next();
  if (first.done) throw new InvalidArgumentError('upload stream was empty: expected a metadata message, then chunks');
  if (first.value.payload?.$case !== 'metadata') {
    throw new InvalidArgumentError('upload stream must start with a metadata message, then chunks; the first message was a chunk or empty');
  }
  const metadata: UploadMetadata = first.value.payload.value;
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const next = await messages.next();
      if (next.done) return;
      const payload = next.value.payload;
      if (payload?.$case === 'metadata') throw new InvalidArgumentError('upload sent metadata twice: expected one metadata message, then only chunks');
      if (payload?.$case !== 'chunk') throw new InvalidArgumentError('upload message carries neither metadata nor a chunk');
      yield payload.value;
    }
  }
  return { metadata, chunks: chunks() };
}

/** `maas.v1.RegistryService` over a {@link Registry}: decode, validate, call, encode. */
export class RegistryService {
  private uploads = 0;

  constructor(
    private readonly registry: Registry,
    private readonly limits: {
      /** @default 30000 */
      idleMs?: number;
      /** @default 64 */
      maxConcurrentUploads?: number;
    } = {},
  ) {}

  addToServer(server: Server): void {
    server.addService(RegistryServiceService, this.handlers());
  }

  handlers(): RegistryServiceServer {
    const r = this.registry;
    return {
      createModel: unary('CreateModel', (req) => r.createModel(req.name, req.description, req.tags)),
      getModel: unary('GetModel', (req) => r.getModel(req.name)),
      listModels: unary('ListModels', (req) => r.listModels(req.pageSize, req.pageToken, req.tag)),
      updateModel: unary('UpdateModel', (req) => r.updateModel(req.name, req.description, req.tags, req.replaceTags)),
      deleteModel: unary('DeleteModel', async (req) => (await r.deleteModel(req.name), {})),
      uploadVersion: clientStreaming('UploadVersion', (call) => this.upload(call)),
      getVersion: unary('GetVersion', (req) => r.getVersion(req.model, req.version)),
      listVersions: unary('ListVersions', (req) => r.listVersions(req.model, req.pageSize, req.pageToken, req.includeArchived)),
      downloadVersion: serverStreaming('DownloadVersion', (req, call) => this.download(req, call)),
      archiveVersion: unary('ArchiveVersion', (req) => r.archiveVersion(req.model, req.version)),
      setAlias: unary('SetAlias', (req) => r.setAlias(req.model, req.alias, req.version)),
      deleteAlias: unary('DeleteAlias', (req) => r.deleteAlias(req.model, req.alias)),
      resolve: unary('Resolve', (req) => r.resolve(parseModelRef(req.reference))),
    };
  }

  private async upload(call: ServerReadableStream<UploadVersionRequest, ModelVersion>): Promise<ModelVersion> {
    const signal = callSignal(call);
    // A cancelled client ends the stream with an error, so the upload stops and cleans up at once.
    signal.addEventListener('abort', () => call.destroy(new CancelledError('upload cancelled by the client; nothing was stored')), { once: true });
    const max = this.limits.maxConcurrentUploads ?? 64;
    if (this.uploads >= max) {
      throw new ResourceExhaustedError(`the registry is taking ${max} uploads already (REGISTRY_MAX_CONCURRENT_UPLOADS): retry when one has finished`);
    }
    this.uploads += 1;
    try {
      const { metadata, chunks } = await splitUpload(call, this.limits.idleMs ?? 30_000);
      return await this.registry.upload(metadata, chunks, signal);
    } finally {
      this.uploads -= 1;
    }
  }

  private async download(request: DownloadVersionRequest, call: ServerWritableStream<DownloadVersionRequest, DownloadVersionResponse>) {
    // A preference, as the proto says: clamped into range rather than refused.
    const chunkSize = request.chunkSize === 0 ? DEFAULT_CHUNK_BYTES : Math.min(MAX_CHUNK_BYTES, Math.max(MIN_CHUNK_BYTES, request.chunkSize));
    let version: ModelVersion;
    if (request.sha256) {
      version = await this.registry.findBySha256(request.sha256);
    } else if (request.model && request.version > 0) {
      version = await this.registry.getVersion(request.model, request.version);
    } else {
      throw new InvalidArgumentError('download needs model and version, or sha256');
    }
    const signal = callSignal(call);
    const write = async (message: DownloadVersionResponse) => {
      if (!call.write(message)) await once(call, 'drain', { signal });
    };
    await write({ payload: { $case: 'metadata', value: version } });
    const stream = this.registry.readArtifact(version, chunkSize);
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (signal.aborted) return;
        await write({ payload: { $case: 'chunk', value: chunk } });
      }
    } finally {
      stream.destroy();
    }
  }
}
