import { once } from 'node:events';
import type { ClientReadableStream, ClientWritableStream, Server, ServerReadableStream, ServerWritableStream } from '@grpc/grpc-js';
import {
  RegistryServiceService,
  type DownloadVersionRequest,
  type DownloadVersionResponse,
  type ModelVersion,
  type RegistryServiceServer,
  type UploadVersionRequest,
} from '@maas/proto';
import { callDeadlineMs, callSignal, callUnary, clientStreaming, grpcCallOptions, ResourceExhaustedError, serverStreaming, unary, type UnaryMethod } from '@maas/rpc';
import type { RegistryClient } from '@maas/registry-client';
import type { Scope } from '@maas/auth';
import type { GatewayAuth } from './gateway-auth';

/** The model a registry write names (`name` on model calls, `model` on version and alias calls). */
function modelOfRequest(req: unknown): string {
  const r = req as { model?: string; name?: string };
  return r.model ?? r.name ?? '';
}

/**
 * `maas.v1.RegistryService` on the gateway, forwarded to the registry after an
 * API-key check: reads need `predict`, writes need `admin`. Uploads and
 * downloads are relayed message by message with flow control, never buffered whole.
 */
export class RegistryProxy {
  constructor(
    private readonly registry: () => RegistryClient,
    private readonly auth: GatewayAuth,
    /** Told about every write that went through, so this gateway sees its own writes at once. */
    private readonly onWrite: (model: string) => void = () => undefined,
    /** Uploads one API key may have open at once. @default 4 */
    private readonly maxUploadsPerKey = 4,
  ) {}

  /** Open uploads by API key id. */
  private readonly uploads = new Map<string, number>();

  addToServer(server: Server): void {
    server.addService(RegistryServiceService, this.handlers());
  }

  handlers(): RegistryServiceServer {
    const relay = <Req, Res>(method: string, scope: Scope, pick: (raw: RegistryClient['raw']) => UnaryMethod<Req, Res>) =>
      unary<Req, Res>(method, async (req, call) => {
        this.auth.authorize(call, scope);
        const raw = this.registry().raw;
        const answer = await callUnary(pick(raw).bind(raw), req, { deadlineMs: callDeadlineMs(call), signal: callSignal(call) });
        if (scope === 'admin') this.onWrite(modelOfRequest(req));
        return answer;
      });
    return {
      createModel: relay('CreateModel', 'admin', (r) => r.createModel),
      getModel: relay('GetModel', 'predict', (r) => r.getModel),
      listModels: relay('ListModels', 'predict', (r) => r.listModels),
      updateModel: relay('UpdateModel', 'admin', (r) => r.updateModel),
      deleteModel: relay('DeleteModel', 'admin', (r) => r.deleteModel),
      uploadVersion: clientStreaming('UploadVersion', (call) => this.upload(call)),
      getVersion: relay('GetVersion', 'predict', (r) => r.getVersion),
      listVersions: relay('ListVersions', 'predict', (r) => r.listVersions),
      downloadVersion: serverStreaming('DownloadVersion', (req, call) => this.download(req, call)),
      archiveVersion: relay('ArchiveVersion', 'admin', (r) => r.archiveVersion),
      setAlias: relay('SetAlias', 'admin', (r) => r.setAlias),
      deleteAlias: relay('DeleteAlias', 'admin', (r) => r.deleteAlias),
      resolve: relay('Resolve', 'predict', (r) => r.resolve),
    };
  }

  private async upload(call: ServerReadableStream<UploadVersionRequest, ModelVersion>): Promise<ModelVersion> {
    const key = this.auth.authorize(call, 'admin');
    // With auth off there are no keys to tell callers apart: the registry's total cap applies alone.
    if (key === '') return this.relayUpload(call);
    const open = this.uploads.get(key) ?? 0;
    if (open >= this.maxUploadsPerKey) {
      throw new ResourceExhaustedError(`API key "${key}" has ${open} uploads open already (GATEWAY_MAX_UPLOADS_PER_KEY): retry when one has finished`);
    }
    this.uploads.set(key, open + 1);
    try {
      return await this.relayUpload(call);
    } finally {
      const left = (this.uploads.get(key) ?? 1) - 1;
      if (left > 0) this.uploads.set(key, left);
      else this.uploads.delete(key);
    }
  }

  private relayUpload(call: ServerReadableStream<UploadVersionRequest, ModelVersion>): Promise<ModelVersion> {
    const signal = callSignal(call);
    return new Promise<ModelVersion>((resolve, reject) => {
      const raw = this.registry().raw;
      const upstream: ClientWritableStream<UploadVersionRequest> = raw.uploadVersion(grpcCallOptions({ deadlineMs: callDeadlineMs(call) }), (err, res) => {
        if (err) return reject(err);
        this.onWrite(res.model);
        resolve(res);
      });
      signal.addEventListener('abort', () => upstream.cancel(), { once: true });
      (async () => {
        for await (const message of call as AsyncIterable<UploadVersionRequest>) {
          if (!upstream.write(message)) await once(upstream, 'drain', { signal });
        }
        upstream.end();
      })().catch(() => upstream.cancel());
    });
  }

  private async download(request: DownloadVersionRequest, call: ServerWritableStream<DownloadVersionRequest, DownloadVersionResponse>): Promise<void> {
    this.auth.authorize(call, 'predict');
    const signal = callSignal(call);
    const raw = this.registry().raw;
    const upstream: ClientReadableStream<DownloadVersionResponse> = raw.downloadVersion(request, grpcCallOptions({ deadlineMs: callDeadlineMs(call) }));
    signal.addEventListener('abort', () => upstream.cancel(), { once: true });
    // The next message is pulled from the registry only once the client has room: memory stays bounded.
    for await (const message of upstream as AsyncIterable<DownloadVersionResponse>) {
      if (!call.write(message)) await once(call, 'drain', { signal });
    }
  }
}
