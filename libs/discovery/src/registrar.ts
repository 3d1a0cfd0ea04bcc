import type { Logger } from 'pino';
import { ConsulClient } from './consul-client';
import { joinHostPort } from './discovery';

/** A service instance to register. */
export interface Registration {
  name: string;
  id: string;
  /** Host others dial. */
  address: string;
  port: number;
  tags?: string[];
  meta?: Record<string, string>;
  check?: {
    /** Check the instance's grpc.health.v1 on address:port. @default true */
    grpc?: boolean;
    /** @default 5 */
    intervalSeconds?: number;
    /** @default 2 */
    timeoutSeconds?: number;
    /** Consul drops the instance after it has been critical this long. @default 60 */
    deregisterCriticalAfterSeconds?: number;
    /** The service's server speaks TLS: Consul checks it over TLS. @default false */
    tls?: boolean;
  };
}

/** Registers service instances with a discovery backend. */
export interface Registrar {
  register(registration: Registration): Promise<void>;
  deregister(id: string): Promise<void>;
  /** Deregisters everything it registered. */
  shutdown(): Promise<void>;
}

/** {@link Registrar} with a Consul agent. */
export class ConsulRegistrar implements Registrar {
  private readonly client: ConsulClient;
  private readonly registered = new Set<string>();

  constructor(
    private readonly address: string,
    private readonly logger?: Logger,
  ) {
    this.client = new ConsulClient(address);
  }

  async register(registration: Registration): Promise<void> {
    const check = registration.check ?? {};
    await this.client.register({
      name: registration.name,
      id: registration.id,
      address: registration.address,
      port: registration.port,
      tags: registration.tags ?? [],
      meta: registration.meta ?? {},
      check:
        check.grpc === false
          ? undefined
          : {
              grpc: joinHostPort(registration.address, registration.port),
              interval: `${check.intervalSeconds ?? 5}s`,
              timeout: `${check.timeoutSeconds ?? 2}s`,
              deregisterCriticalServiceAfter: `${check.deregisterCriticalAfterSeconds ?? 60}s`,
              tls: check.tls,
            },
    });
    this.registered.add(registration.id);
    this.logger?.info({ consul: this.address, service: registration.name, id: registration.id }, 'registered in consul');
  }

  async deregister(id: string): Promise<void> {
    await this.client.deregister(id);
    this.registered.delete(id);
    this.logger?.info({ consul: this.address, id }, 'deregistered from consul');
  }

  async shutdown(): Promise<void> {
    for (const id of [...this.registered]) {
      try {
        await this.deregister(id);
      } catch (err) {
        this.logger?.warn({ id, err: (err as Error).message }, 'could not deregister; consul will drop it once its check is critical');
      }
    }
  }
}

/** {@link Registrar} that registers nowhere, for the embedded default. */
export class NoopRegistrar implements Registrar {
  async register(): Promise<void> {}
  async deregister(): Promise<void> {}
  async shutdown(): Promise<void> {}
}
