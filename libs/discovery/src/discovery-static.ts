import { type Discovery, type ServiceInstance, splitHostPort } from './discovery';

/**
 * {@link Discovery} from a fixed list of addresses per service, for the
 * embedded default where nothing registers anywhere. The set never changes.
 */
export class StaticDiscovery implements Discovery {
  private readonly services = new Map<string, ServiceInstance[]>();

  constructor(services: Record<string, string[]>) {
    for (const [name, addresses] of Object.entries(services)) {
      this.services.set(
        name,
        addresses.map((address) => ({ id: address, address, ...splitHostPort(address), tags: [], meta: {} })),
      );
    }
  }

  instances(service: string): ServiceInstance[] {
    return this.services.get(service) ?? [];
  }

  watch(service: string, listener: (instances: ServiceInstance[]) => void): () => void {
    listener(this.instances(service));
    return () => undefined;
  }

  async ready(service: string): Promise<ServiceInstance[]> {
    return this.instances(service);
  }

  async shutdown(): Promise<void> {}
}
