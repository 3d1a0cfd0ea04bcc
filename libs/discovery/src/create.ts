import type { Logger } from 'pino';
import type { Discovery } from './discovery';
import { ConsulDiscovery } from './discovery-consul';
import { StaticDiscovery } from './discovery-static';
import { ConsulRegistrar, NoopRegistrar, type Registrar } from './registrar';

/** Consul when `consulAddress` is set, else the static lists. */
export function createDiscovery(options: { consulAddress?: string; consulToken?: string; static?: Record<string, string[]>; waitSeconds?: number; logger?: Logger }): Discovery {
  return options.consulAddress
    ? new ConsulDiscovery({ address: options.consulAddress, token: options.consulToken, waitSeconds: options.waitSeconds, logger: options.logger })
    : new StaticDiscovery(options.static ?? {});
}

/** Consul when `consulAddress` is set, else a registrar that does nothing. */
export function createRegistrar(options: { consulAddress?: string; consulToken?: string; logger?: Logger }): Registrar {
  return options.consulAddress ? new ConsulRegistrar(options.consulAddress, { token: options.consulToken, logger: options.logger }) : new NoopRegistrar();
}
