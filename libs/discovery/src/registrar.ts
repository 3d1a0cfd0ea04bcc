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
  /** The setting that chooses {@link address} (say REGISTRY_ADVERTISE_ADDRESS), named when the address cannot work. */
  advertiseVariable?: string;
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

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i;

/**
 * Refuses an address Consul would refuse or others could not reach: Consul
 * answers 400 for a service address of 0.0.0.0 or ::, and a loopback address
 * is registered but reachable from no other host, so it only works while the
 * Consul agent is on loopback too (one machine, development).
 */
export function checkAdvertisedHost(host: string, consulAddress: string, variable: string): void {
  const bare = host.replace(/^\[|\]$/g, '');
  if (bare === '0.0.0.0' || bare === '::' || bare === '') {
    throw new Error(
      `cannot register in Consul with address "${host}": Consul refuses an unspecified address (0.0.0.0, ::) and nobody can dial it; set ${variable} to the host:port other services reach this one at`,
    );
  }
  const consulHost = new URL(/^https?:\/\//.test(consulAddress) ? consulAddress : `http://${consulAddress}`).hostname.replace(/^\[|\]$/g, '');
  if (LOOPBACK.test(bare) && !LOOPBACK.test(consulHost)) {
    throw new Error(
      `cannot register in Consul at ${consulAddress} with loopback address "${host}": it would be registered but unreachable from any other host; set ${variable} to the host:port other services reach this one at`,
    );
  }
}

/** Options of {@link ConsulRegistrar}. */
export interface ConsulRegistrarOptions {
  /** ACL token (CONSUL_HTTP_TOKEN). */
  token?: string;
  /** How often the agent is asked whether it still holds our registrations, in ms. @default 10000 */
  antiEntropyMs?: number;
  logger?: Logger;
}

/**
 * {@link Registrar} with a Consul agent. The agent can lose a registration
 * (restarted with an empty data dir, an operator's deregister): every
 * {@link ConsulRegistrarOptions.antiEntropyMs} the registrar lists what the
 * agent holds and registers again whatever of its own is missing, as
 * Consul's own anti-entropy does between agent and catalog.
 */
export class ConsulRegistrar implements Registrar {
  private readonly client: ConsulClient;
  private readonly registered = new Map<string, Registration>();
  private readonly logger?: Logger;
  private timer?: NodeJS.Timeout;
  private syncing = false;

  constructor(
    private readonly address: string,
    private readonly options: ConsulRegistrarOptions = {},
  ) {
    this.client = new ConsulClient(address, { token: options.token });
    this.logger = options.logger;
  }

  async register(registration: Registration): Promise<void> {
    checkAdvertisedHost(registration.address, this.address, registration.advertiseVariable ?? 'the advertised address');
    await this.send(registration);
    this.registered.set(registration.id, registration);
    this.logger?.info({ consul: this.address, service: registration.name, id: registration.id }, 'registered in consul');
    if (!this.timer) {
      this.timer = setInterval(() => void this.sync(), this.options.antiEntropyMs ?? 10_000);
      this.timer.unref();
    }
  }

  /** Registers again what the agent no longer holds; returns the IDs it restored. */
  async sync(): Promise<string[]> {
    if (this.syncing || this.registered.size === 0) return [];
    this.syncing = true;
    const restored: string[] = [];
    try {
      const held = await this.client.registeredIds();
      for (const [id, registration] of this.registered) {
        if (held.has(id)) continue;
        await this.send(registration);
        restored.push(id);
        this.logger?.warn({ consul: this.address, service: registration.name, id }, 'consul had lost this registration; registered again');
      }
    } catch (err) {
      this.logger?.warn({ consul: this.address, err: (err as Error).message }, 'could not check the registrations in consul; trying again later');
    } finally {
      this.syncing = false;
    }
    return restored;
  }

  private async send(registration: Registration): Promise<void> {
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
  }

  async deregister(id: string): Promise<void> {
    await this.client.deregister(id);
    this.registered.delete(id);
    this.logger?.info({ consul: this.address, id }, 'deregistered from consul');
  }

  async shutdown(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    for (const id of [...this.registered.keys()]) {
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
