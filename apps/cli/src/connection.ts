import { Metadata } from '@grpc/grpc-js';
import { GatewayServiceClient } from '@maas/proto';
import { RegistryClient } from '@maas/registry-client';
import { clientCredentials, defaultClientOptions, RECEIVE_WINDOW_BYTES, type TlsFiles } from '@maas/rpc';

/** Global options every command gets. */
export interface GlobalOptions {
  gateway: string;
  apiKey?: string;
  json?: boolean;
  timeout: number;
  /** TLS to the gateway when `caFile` is set; `certFile`/`keyFile` add a client certificate. */
  tls?: TlsFiles;
}

/** Clients for the gateway's public API, carrying the API key. */
export class Connection {
  readonly gateway: InstanceType<typeof GatewayServiceClient>;
  readonly registry: RegistryClient;

  constructor(readonly options: GlobalOptions) {
    const channel = clientCredentials(options.tls ?? { certFile: '', keyFile: '', caFile: '', clientAuth: 'none' });
    this.gateway = new GatewayServiceClient(options.gateway, channel, defaultClientOptions(undefined, { receiveWindowBytes: RECEIVE_WINDOW_BYTES }));
    this.registry = new RegistryClient(options.gateway, { metadata: () => this.metadata(), credentials: channel });
  }

  /** Metadata of every call: the bearer key when given. */
  metadata(): Metadata {
    const md = new Metadata();
    if (this.options.apiKey) md.set('authorization', `Bearer ${this.options.apiKey}`);
    return md;
  }

  /** Per-call options: deadline and metadata. */
  call(): { timeoutMs: number; metadata: Metadata } {
    return { timeoutMs: this.options.timeout, metadata: this.metadata() };
  }

  close(): void {
    this.gateway.close();
    this.registry.close();
  }
}
