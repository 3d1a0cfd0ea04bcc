/** One healthy instance of a service. */
export interface ServiceInstance {
  /** Unique id of the instance (Consul service ID). */
  id: string;
  /** `host:port` to dial. */
  address: string;
  host: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
}

/** Watches the healthy instances of services. */
export interface Discovery {
  /** Current healthy instances of a service (empty before the first answer). */
  instances(service: string): ServiceInstance[];
  /** Calls `listener` with the full healthy set now (if known) and on every change; returns an unsubscribe function. */
  watch(service: string, listener: (instances: ServiceInstance[]) => void): () => void;
  /** Resolves once the first answer for `service` arrived; rejects after `timeoutMs`. */
  ready(service: string, timeoutMs?: number): Promise<ServiceInstance[]>;
  shutdown(): Promise<void>;
}

/** Service names in Consul. */
export const SERVICE_INFERENCE = 'maas-inference';
export const SERVICE_REGISTRY = 'maas-registry';
export const SERVICE_GATEWAY = 'maas-gateway';

/** Splits `host:port` (IPv6 in brackets) into its parts. */
export function splitHostPort(address: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(address);
  if (!match) throw new Error(`address ${JSON.stringify(address)} is not host:port`);
  return { host: match[1].replace(/^\[|\]$/g, ''), port: Number(match[2]) };
}

/** Joins a host and port, bracketing IPv6 hosts. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Same set of instances (ids, addresses, tags, meta), order ignored. */
export function sameInstances(a: ServiceInstance[], b: ServiceInstance[]): boolean {
  if (a.length !== b.length) return false;
  const key = (i: ServiceInstance) => JSON.stringify([i.id, i.address, [...i.tags].sort(), Object.entries(i.meta).sort()]);
  const left = a.map(key).sort();
  const right = b.map(key).sort();
  return left.every((k, i) => k === right[i]);
}
