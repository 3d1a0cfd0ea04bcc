import {
  Server,
  ServerCredentials,
  type ServerInterceptor,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Http2Server, IncomingHttpHeaders, ServerHttp2Session, ServerHttp2Stream } from 'node:http2';
import type { HealthImplementation, ServingStatus } from 'grpc-health-check';
import { MAX_MESSAGE_BYTES } from './grpc-client';
import { rawRouteTakes, RawUnaryCall, type RawUnaryRoute } from './raw-unary';

/** RST_STREAM frames a connection may send in a burst before the server ends it (Node's default: 1,000). */
export const STREAM_RESET_BURST = 100_000;
/** RST_STREAM frames per second that refill the burst (Node's default: 33). */
export const STREAM_RESET_RATE = 10_000;

/** Options of {@link GrpcServer}. */
export interface GrpcServerOptions {
  /** Interface to bind. @default '127.0.0.1' */
  host?: string;
  /** Port to bind; 0 picks a free one. @default 0 */
  port?: number;
  /** Largest request message accepted, in bytes. @default 16 MiB */
  maxReceiveMessageBytes?: number;
  /** Largest response message sent, in bytes. @default 16 MiB */
  maxSendMessageBytes?: number;
  /** Transport credentials. @default insecure */
  credentials?: ServerCredentials;
  /** Server interceptors (metrics, request ids), outermost first. @default none */
  interceptors?: ServerInterceptor[];
  /**
   * HTTP/2 receive window per connection and per stream, in bytes. The
   * protocol default (64 KiB) lets a client send only 64 KiB while the
   * server's event loop is busy; a server that blocks it (a synchronous
   * onnxruntime run) takes large requests much faster with a bigger window.
   * @default the HTTP/2 default
   */
  receiveWindowBytes?: number;
  /**
   * HTTP/2 receive window of each connection as a whole, in bytes, when it
   * is to be wider than the per-stream one ({@link receiveWindowBytes}). All
   * the streams of a client share it: at 64 KiB a client's many calls (and
   * the first bytes of the calls refused at their headers) queue behind each
   * other's window updates. A wide connection window with a narrow stream
   * window keeps per-stream backpressure (uploads) and bounds what one
   * connection can have buffered.
   * @default receiveWindowBytes
   */
  connectionWindowBytes?: number;
}

/** Anything that can mount its handlers on a grpc-js server. */
export interface GrpcService {
  addToServer(server: Server): void;
}

/**
 * Health service name that answers SERVING for as long as the process answers
 * at all, also while it drains (when '' is NOT_SERVING): what a liveness probe
 * asks, so a draining server is taken out of rotation but not restarted.
 */
export const LIVENESS_SERVICE = 'maas.liveness';

/**
 * grpc-health-check reads and parses its .proto when it is first required
 * (0.2 s measured): it is required when a server is built, so clients of this
 * library (the CLI) never pay for it.
 */
function healthImplementation(): typeof HealthImplementation {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('grpc-health-check') as typeof import('grpc-health-check')).HealthImplementation;
}

/**
 * A grpc-js server with `grpc.health.v1` mounted, a bind that reports the real
 * port, and a graceful shutdown that flips health to NOT_SERVING first.
 */
export class GrpcServer {
  readonly server: Server;
  readonly health: HealthImplementation = new (healthImplementation())({ '': 'NOT_SERVING', [LIVENESS_SERVICE]: 'SERVING' });
  private boundPort = 0;
  private readonly services: string[] = [];
  private readonly rawRoutes = new Map<string, RawUnaryRoute<unknown>>();

  constructor(private readonly options: GrpcServerOptions = {}) {
    const max = MAX_MESSAGE_BYTES;
    this.server = new Server({
      'grpc.max_receive_message_length': options.maxReceiveMessageBytes ?? max,
      'grpc.max_send_message_length': options.maxSendMessageBytes ?? max,
      interceptors: options.interceptors ?? [],
    });
    // Node's HTTP/2 server answers more than 1,000 RST_STREAMs in a burst (refilling at 33/s) with
    // GOAWAY, which kills every call on that connection: a client cancelling its own calls at volume
    // (deadlines under overload) would cost its neighbours theirs. grpc-js passes no option for it,
    // so the limit goes into the options it gives http2.createServer.
    const common = (this.server as unknown as { commonServerOptions?: Record<string, unknown> }).commonServerOptions;
    if (common) Object.assign(common, { streamResetBurst: STREAM_RESET_BURST, streamResetRate: STREAM_RESET_RATE });
    this.health.addToServer(this.server);
  }

  /** Mounts a service object (one with `addToServer`). */
  add(service: GrpcService): this {
    service.addToServer(this.server);
    return this;
  }

  /** Mounts generated service definitions with their handlers, registering each for health. */
  addService<I extends UntypedServiceImplementation>(name: string, definition: ServiceDefinition<I>, impl: I): this {
    this.server.addService(definition, impl);
    this.services.push(name);
    return this;
  }

  /**
   * Serves a unary method on Node's HTTP/2 streams directly (see
   * {@link RawUnaryRoute}), ahead of grpc-js. The method's grpc-js handler
   * stays mounted: it answers the calls the raw path leaves to it (compressed
   * requests), and everything else works as before if grpc-js's internals it
   * hooks into are missing. Call before {@link start}.
   */
  addRawUnary<Req>(route: RawUnaryRoute<Req>): this {
    this.rawRoutes.set(route.path, route as RawUnaryRoute<unknown>);
    return this;
  }

  /** Binds and starts serving; health turns SERVING. Resolves to the bound port. */
  async start(): Promise<number> {
    const host = this.options.host ?? '127.0.0.1';
    const target = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
    this.boundPort = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(
        `${target}:${this.options.port ?? 0}`,
        this.options.credentials ?? ServerCredentials.createInsecure(),
        (err, port) => (err ? reject(err) : resolve(port)),
      );
    });
    const { receiveWindowBytes, connectionWindowBytes } = this.options;
    if (receiveWindowBytes || connectionWindowBytes) this.widenReceiveWindow(receiveWindowBytes, connectionWindowBytes ?? receiveWindowBytes);
    if (this.rawRoutes.size > 0) this.routeRawStreams();
    this.setServing(true);
    return this.boundPort;
  }

  /**
   * grpc-js has no server option for flow-control windows, so each new
   * HTTP/2 session of its listeners gets them here.
   */
  private widenReceiveWindow(streamBytes: number | undefined, connectionBytes: number | undefined): void {
    const cap = (bytes: number) => Math.min(bytes, 2 ** 31 - 1);
    // A grpc-js without that field: keep the protocol default.
    for (const listener of this.listeners()) {
      listener.on('session', (session: ServerHttp2Session) => {
        if (connectionBytes) session.setLocalWindowSize(cap(connectionBytes));
        if (streamBytes) session.settings({ initialWindowSize: cap(streamBytes) });
      });
    }
  }

  /** grpc-js's HTTP/2 listeners (a private field: empty when a grpc-js version has none). */
  private listeners(): Http2Server[] {
    const listeners = (this.server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
    return listeners instanceof Map ? [...listeners.keys()] : [];
  }

  /**
   * Puts a dispatcher in front of grpc-js's stream handler on each listener:
   * streams of a raw route that the raw path can serve go to it, every other
   * stream to grpc-js as before.
   */
  private routeRawStreams(): void {
    const limits = {
      maxReceiveMessageBytes: this.options.maxReceiveMessageBytes ?? MAX_MESSAGE_BYTES,
      maxSendMessageBytes: this.options.maxSendMessageBytes ?? MAX_MESSAGE_BYTES,
    };
    // grpc-js counts a connection's open streams to close it when idle (grpc.max_connection_idle_ms).
    const opened = (this.server as unknown as { onStreamOpened?: (stream: ServerHttp2Stream) => void }).onStreamOpened?.bind(this.server);
    for (const listener of this.listeners()) {
      const grpcHandlers = listener.listeners('stream') as Array<(stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void>;
      if (grpcHandlers.length === 0) continue;
      listener.removeAllListeners('stream');
      listener.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => {
        const route = this.rawRoutes.get(headers[':path'] as string);
        if (route && rawRouteTakes(headers)) {
          opened?.(stream);
          new RawUnaryCall(stream, headers, route, limits).run();
          return;
        }
        for (const handler of grpcHandlers) handler.call(listener, stream, headers);
      });
    }
  }

  get port(): number {
    return this.boundPort;
  }

  /** Sets the overall and every mounted service's health status. */
  setServing(serving: boolean): void {
    const value: ServingStatus = serving ? 'SERVING' : 'NOT_SERVING';
    this.health.setStatus('', value);
    for (const name of this.services) this.health.setStatus(name, value);
  }

  /**
   * Stops accepting calls and waits for running ones up to `graceMs`, then
   * cancels whatever is left.
   */
  async shutdown(graceMs = 10_000): Promise<void> {
    this.setServing(false);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
