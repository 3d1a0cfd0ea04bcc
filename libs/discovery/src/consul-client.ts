import { EventEmitter } from 'node:events';
import Consul from 'consul';

/** One entry of `/v1/health/service/<name>`, reduced to what discovery uses. */
export interface ConsulServiceEntry {
  Node: { Node: string; Address: string };
  Service: { ID: string; Service: string; Tags: string[] | null; Address: string; Port: number; Meta: Record<string, string> | null };
  Checks: Array<{ CheckID: string; Status: string; ServiceID: string }>;
}

/** Result of a blocking health query. */
export interface HealthQueryResult {
  entries: ConsulServiceEntry[];
  /** `X-Consul-Index` of the answer, to pass to the next blocking query. */
  index: string;
}

/** A service registration in the agent's terms (see Consul's /v1/agent/service/register). */
export interface ConsulRegistration {
  name: string;
  id: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  check?: {
    /** `host:port` of a grpc.health.v1 endpoint. */
    grpc: string;
    interval: string;
    timeout: string;
    deregisterCriticalServiceAfter: string;
    /** Check over TLS (the certificate is not verified: the check reads only the serving status). */
    tls?: boolean;
  };
}

/** `health.service` as it really behaves with blocking options and `ctx.includeResponse`. */
type BlockingHealthQuery = (options: {
  service: string;
  passing: boolean;
  index?: string;
  wait?: string;
  ctx: EventEmitter & { includeResponse: true };
  timeout: number;
}) => Promise<[{ headers: Record<string, string | undefined> }, ConsulServiceEntry[] | undefined]>;

/**
 * The one place that talks to the `consul` package. Its typings know neither
 * blocking-query options (`index`, `wait`) nor how to read `X-Consul-Index`;
 * this adapter adds both with types, so nothing else casts.
 */
export class ConsulClient {
  private readonly consul: Consul;

  /**
   * @param address `host:port` or `http(s)://host:port`.
   * @param options.token ACL token sent as `X-Consul-Token` on every call (CONSUL_HTTP_TOKEN).
   */
  constructor(address: string, options: { token?: string } = {}) {
    const url = new URL(/^https?:\/\//.test(address) ? address : `http://${address}`);
    this.consul = new Consul({
      host: url.hostname,
      port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
      secure: url.protocol === 'https:',
      ...(options.token ? { defaults: { token: options.token } } : {}),
    });
  }

  /** IDs of the services the agent has registered (`/v1/agent/services`). */
  async registeredIds(): Promise<Set<string>> {
    const services = (await this.consul.agent.service.list()) as Record<string, unknown>;
    return new Set(Object.keys(services ?? {}));
  }

  /**
   * `/v1/health/service/<name>?passing` as a blocking query: returns when the
   * result changes after `index`, or after `waitSeconds`. `signal` aborts it.
   */
  async healthyInstances(service: string, index: string, waitSeconds: number, signal?: AbortSignal): Promise<HealthQueryResult> {
    const ctx = Object.assign(new EventEmitter(), { includeResponse: true as const });
    const onAbort = () => ctx.emit('cancel');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const options = {
        service,
        passing: true,
        ...(index ? { index, wait: `${waitSeconds}s` } : {}),
        ctx,
        // The HTTP timeout must outlast the blocking wait (Consul adds up to wait/16 of jitter).
        timeout: (waitSeconds + Math.ceil(waitSeconds / 16) + 5) * 1000,
      };
      const query = this.consul.health.service.bind(this.consul.health) as unknown as BlockingHealthQuery;
      const [response, body] = await query(options);
      return { entries: body ?? [], index: response.headers['x-consul-index'] ?? '' };
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async register(registration: ConsulRegistration): Promise<void> {
    await this.consul.agent.service.register({
      name: registration.name,
      id: registration.id,
      address: registration.address,
      port: registration.port,
      tags: registration.tags,
      meta: registration.meta,
      ...(registration.check
        ? {
            check: {
              name: `${registration.name} gRPC health`,
              grpc: registration.check.grpc,
              interval: registration.check.interval,
              timeout: registration.check.timeout,
              deregistercriticalserviceafter: registration.check.deregisterCriticalServiceAfter,
              ...(registration.check.tls ? { grpcusetls: true, tlsskipverify: true } : {}),
            },
          }
        : {}),
    });
  }

  async deregister(id: string): Promise<void> {
    await this.consul.agent.service.deregister(id);
  }
}
