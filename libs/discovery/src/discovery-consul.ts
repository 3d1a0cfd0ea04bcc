import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { ConsulClient, type ConsulServiceEntry } from './consul-client';
import { type Discovery, joinHostPort, sameInstances, type ServiceInstance } from './discovery';

/** Options of {@link ConsulDiscovery}. */
export interface ConsulDiscoveryOptions {
  /** Consul agent, `host:port` or `http(s)://host:port`. */
  address: string;
  /** Longest blocking wait per query, in seconds. @default 30 */
  waitSeconds?: number;
  /** First retry delay after an error. @default 200 */
  minBackoffMs?: number;
  /** Longest retry delay. @default 5000 */
  maxBackoffMs?: number;
  /** ACL token (CONSUL_HTTP_TOKEN). */
  token?: string;
  /** Queries per second the watch loop of one service may make at most, sustained (in bursts of 3). @default 10 */
  maxQueriesPerSecond?: number;
  logger?: Logger;
}

/**
 * The index to send with the next blocking query, from the `X-Consul-Index`
 * of an answer and the one before it. Consul's rules: an index that went
 * backwards (a restarted agent, a snapshot restored) means start over with
 * no index; an index that is 0, missing or not a number must never be sent
 * as is (the query would return at once, again and again): it is taken as 1.
 */
export function nextIndex(previous: string, answered: string): string {
  const next = Number(answered);
  if (!answered || !Number.isInteger(next) || next <= 0) return '1';
  if (previous && next < Number(previous)) return '';
  return answered;
}

interface Watch {
  instances: ServiceInstance[];
  known: boolean;
  index: string;
  abort: AbortController;
  consecutiveFailures: number;
  lastError: string;
}

/** How the watch of one service is doing, for metrics and health. */
export interface WatchState {
  /** An answer has arrived at least once. */
  known: boolean;
  /** Failed queries since the last success. */
  consecutiveFailures: number;
  lastError: string;
  instances: number;
}

function toInstance(entry: ConsulServiceEntry): ServiceInstance {
  const host = entry.Service.Address || entry.Node.Address;
  return {
    id: entry.Service.ID,
    address: joinHostPort(host, entry.Service.Port),
    host,
    port: entry.Service.Port,
    tags: entry.Service.Tags ?? [],
    meta: entry.Service.Meta ?? {},
  };
}

/**
 * {@link Discovery} through Consul's health endpoint with blocking queries:
 * one long-poll loop per watched service, listeners told only when the healthy
 * set really changed. On errors it backs off exponentially and keeps the last
 * good set, so a Consul hiccup never empties the routing table.
 */
export class ConsulDiscovery implements Discovery {
  private readonly client: ConsulClient;
  private readonly watches = new Map<string, Watch>();
  private readonly emitter = new EventEmitter().setMaxListeners(0);
  private stopped = false;

  constructor(private readonly options: ConsulDiscoveryOptions) {
    this.client = new ConsulClient(options.address, { token: options.token });
  }

  instances(service: string): ServiceInstance[] {
    return this.ensureWatch(service).instances;
  }

  watch(service: string, listener: (instances: ServiceInstance[]) => void): () => void {
    const watch = this.ensureWatch(service);
    if (watch.known) listener(watch.instances);
    this.emitter.on(service, listener);
    return () => this.emitter.off(service, listener);
  }

  ready(service: string, timeoutMs = 10_000): Promise<ServiceInstance[]> {
    const watch = this.ensureWatch(service);
    if (watch.known) return Promise.resolve(watch.instances);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.emitter.off(service, onChange);
        reject(new Error(`no answer from Consul at ${this.options.address} about "${service}" within ${timeoutMs} ms`));
      }, timeoutMs);
      const onChange = (instances: ServiceInstance[]) => {
        clearTimeout(timer);
        this.emitter.off(service, onChange);
        resolve(instances);
      };
      this.emitter.on(service, onChange);
    });
  }

  watchState(service: string): WatchState {
    const watch = this.ensureWatch(service);
    return { known: watch.known, consecutiveFailures: watch.consecutiveFailures, lastError: watch.lastError, instances: watch.instances.length };
  }

  async shutdown(): Promise<void> {
    this.stopped = true;
    for (const watch of this.watches.values()) watch.abort.abort();
    this.emitter.removeAllListeners();
  }

  private ensureWatch(service: string): Watch {
    let watch = this.watches.get(service);
    if (!watch) {
      watch = { instances: [], known: false, index: '', abort: new AbortController(), consecutiveFailures: 0, lastError: '' };
      this.watches.set(service, watch);
      void this.loop(service, watch);
    }
    return watch;
  }

  private async loop(service: string, watch: Watch): Promise<void> {
    const wait = this.options.waitSeconds ?? 30;
    const minBackoff = this.options.minBackoffMs ?? 200;
    const maxBackoff = this.options.maxBackoffMs ?? 5000;
    let backoff = minBackoff;
    // A small token bucket: whatever Consul (or a proxy in front of it) answers, the loop never spins.
    const perSecond = this.options.maxQueriesPerSecond ?? 10;
    const burst = 3;
    let tokens = burst;
    let filled = Date.now();
    while (!this.stopped) {
      const now = Date.now();
      tokens = Math.min(burst, tokens + ((now - filled) / 1000) * perSecond);
      filled = now;
      if (tokens < 1) {
        await new Promise((resolve) => setTimeout(resolve, ((1 - tokens) / perSecond) * 1000));
        continue;
      }
      tokens -= 1;
      try {
        const result = await this.client.healthyInstances(service, watch.index, wait, watch.abort.signal);
        watch.index = nextIndex(watch.index, result.index);
        backoff = minBackoff;
        watch.consecutiveFailures = 0;
        const instances = result.entries.map(toInstance);
        if (!watch.known || !sameInstances(instances, watch.instances)) {
          const first = !watch.known;
          watch.instances = instances;
          watch.known = true;
          this.options.logger?.info({ service, instances: instances.map((i) => i.address), first }, 'healthy instances changed');
          this.emitter.emit(service, instances);
        }
      } catch (err) {
        if (this.stopped) return;
        watch.consecutiveFailures += 1;
        watch.lastError = (err as Error).message;
        this.options.logger?.warn({ service, err: (err as Error).message, retryInMs: backoff }, 'consul query failed; keeping the last known instances');
        watch.index = '';
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, maxBackoff);
      }
    }
  }
}
