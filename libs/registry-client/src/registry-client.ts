import { once } from 'node:events';
import { Metadata, type ChannelCredentials } from '@grpc/grpc-js';
import {
  RegistryServiceClient,
  type DownloadVersionResponse,
  type ListModelsResponse,
  type ListVersionsResponse,
  type Model,
  type ModelVersion,
  type UploadMetadata,
  type UploadVersionRequest,
} from '@maas/proto';
import { callUnary, channelCredentials, defaultClientOptions, grpcCallOptions, type CallOpts } from '@maas/rpc';

/** Options of {@link RegistryClient}. */
export interface RegistryClientOptions {
  /** @default insecure */
  credentials?: ChannelCredentials;
  /** Sent with every call (e.g. `authorization` when talking through the gateway). */
  metadata?: () => Metadata;
  /** Upload chunk size in bytes. @default 256 KiB */
  uploadChunkBytes?: number;
}

/** A downloaded artifact: the version's metadata, then its bytes as a stream of chunks. */
export interface Download {
  version: ModelVersion;
  chunks: AsyncIterable<Buffer>;
  /** Stops the download early. */
  cancel(): void;
}

/**
 * Promise-based client of `maas.v1.RegistryService`, shared by nodes (artifact
 * pulls), the gateway (resolution, proxying) and the CLI.
 */
export class RegistryClient {
  /** The generated client, for proxying calls as they are. */
  readonly raw: InstanceType<typeof RegistryServiceClient>;
  private readonly chunkBytes: number;

  constructor(
    readonly address: string,
    private readonly options: RegistryClientOptions = {},
  ) {
    this.raw = new RegistryServiceClient(address, channelCredentials(options.credentials), defaultClientOptions());
    this.chunkBytes = options.uploadChunkBytes ?? 256 * 1024;
  }

  createModel(name: string, description = '', tags: string[] = [], opts: CallOpts = {}): Promise<Model> {
    return callUnary(this.raw.createModel.bind(this.raw), { name, description, tags }, this.opts(opts));
  }

  getModel(name: string, opts: CallOpts = {}): Promise<Model> {
    return callUnary(this.raw.getModel.bind(this.raw), { name }, this.opts(opts));
  }

  listModels(request: { pageSize?: number; pageToken?: string; tag?: string } = {}, opts: CallOpts = {}): Promise<ListModelsResponse> {
    return callUnary(
      this.raw.listModels.bind(this.raw),
      { pageSize: request.pageSize ?? 0, pageToken: request.pageToken ?? '', tag: request.tag ?? '' },
      this.opts(opts),
    );
  }

  async deleteModel(name: string, opts: CallOpts = {}): Promise<void> {
    await callUnary(this.raw.deleteModel.bind(this.raw), { name }, this.opts(opts));
  }

  getVersion(model: string, version: number, opts: CallOpts = {}): Promise<ModelVersion> {
    return callUnary(this.raw.getVersion.bind(this.raw), { model, version }, this.opts(opts));
  }

  listVersions(model: string, request: { pageSize?: number; pageToken?: string; includeArchived?: boolean } = {}, opts: CallOpts = {}): Promise<ListVersionsResponse> {
    return callUnary(
      this.raw.listVersions.bind(this.raw),
      { model, pageSize: request.pageSize ?? 0, pageToken: request.pageToken ?? '', includeArchived: request.includeArchived ?? false },
      this.opts(opts),
    );
  }

  archiveVersion(model: string, version: number, opts: CallOpts = {}): Promise<ModelVersion> {
    return callUnary(this.raw.archiveVersion.bind(this.raw), { model, version }, this.opts(opts));
  }

  setAlias(model: string, alias: string, version: number, opts: CallOpts = {}): Promise<Model> {
    return callUnary(this.raw.setAlias.bind(this.raw), { model, alias, version }, this.opts(opts));
  }

  deleteAlias(model: string, alias: string, opts: CallOpts = {}): Promise<Model> {
    return callUnary(this.raw.deleteAlias.bind(this.raw), { model, alias }, this.opts(opts));
  }

  /** Resolves `model`, `model:version` or `model@alias`. */
  resolve(reference: string, opts: CallOpts = {}): Promise<ModelVersion> {
    return callUnary(this.raw.resolve.bind(this.raw), { reference }, this.opts(opts));
  }

  /**
   * Streams an artifact up: the metadata message, then `chunks` re-cut to the
   * upload chunk size, honouring flow control so memory stays flat.
   */
  upload(metadata: UploadMetadata, chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, opts: CallOpts & { onProgress?: (bytes: number) => void } = {}): Promise<ModelVersion> {
    return new Promise<ModelVersion>((resolve, reject) => {
      let settled = false;
      const call = this.raw.uploadVersion(this.metadata(opts.metadata), grpcCallOptions(opts), (err, response) => {
        settled = true;
        if (err) reject(err);
        else resolve(response);
      });
      const onAbort = () => call.cancel();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const send = async (message: UploadVersionRequest) => {
        if (!call.write(message)) await once(call, 'drain');
      };
      (async () => {
        await send({ payload: { $case: 'metadata', value: metadata } });
        let sent = 0;
        for await (const chunk of chunks) {
          for (let offset = 0; offset < chunk.length && !settled; offset += this.chunkBytes) {
            const piece = chunk.subarray(offset, offset + this.chunkBytes);
            await send({ payload: { $case: 'chunk', value: Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength) } });
            sent += piece.length;
            opts.onProgress?.(sent);
          }
          if (settled) return;
        }
        call.end();
      })().catch((err: unknown) => {
        call.cancel();
        if (!settled) reject(err);
      });
    });
  }

  /** Downloads a version's artifact by model and version, or by sha256. */
  async download(target: { model: string; version: number } | { sha256: string }, opts: CallOpts & { chunkSize?: number } = {}): Promise<Download> {
    const request = {
      model: 'model' in target ? target.model : '',
      version: 'version' in target ? target.version : 0,
      sha256: 'sha256' in target ? target.sha256 : '',
      chunkSize: opts.chunkSize ?? 0,
    };
    const call = this.raw.downloadVersion(request, this.metadata(opts.metadata), grpcCallOptions(opts));
    const onAbort = () => call.cancel();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const messages = call[Symbol.asyncIterator]() as AsyncIterator<DownloadVersionResponse>;
    const first = await messages.next().catch((err: unknown) => {
      call.cancel();
      throw err;
    });
    if (first.done || first.value.payload?.$case !== 'metadata') {
      call.cancel();
      throw new Error('registry download did not start with the version metadata');
    }
    async function* chunks(): AsyncGenerator<Buffer> {
      try {
        for (;;) {
          const next = await messages.next();
          if (next.done) return;
          if (next.value.payload?.$case === 'chunk') yield Buffer.from(next.value.payload.value);
        }
      } finally {
        opts.signal?.removeEventListener('abort', onAbort);
      }
    }
    return { version: first.value.payload.value, chunks: chunks(), cancel: () => call.cancel() };
  }

  close(): void {
    this.raw.close();
  }

  private opts(opts: CallOpts): CallOpts {
    return { ...opts, metadata: this.metadata(opts.metadata) };
  }

  /**
   * The client's metadata with a call's own on top. A key the call sets
   * replaces the client's (Metadata.merge would add a second value, and
   * `authorization` may carry only one).
   */
  private metadata(extra?: Metadata): Metadata {
    const base = this.options.metadata?.() ?? new Metadata();
    if (!extra) return base;
    for (const [key, values] of Object.entries(extra.toJSON())) {
      base.remove(key);
      for (const value of values) base.add(key, value);
    }
    return base;
  }
}
