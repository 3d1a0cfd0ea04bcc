import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * A Prometheus counter whose value is read from a running total kept
 * elsewhere (for example a cache's hit count) at scrape time.
 */
export function totalCounter(registry: Registry, name: string, help: string, read: () => number): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** Metrics of a process's near-cache lease (a `CacheLease` of `@maas/cache`). */
export function leaseMetrics(registry: Registry, lease: { trusted(): boolean; readonly renewals: number }): void {
  new Gauge({
    name: 'maas_cache_lease_held',
    help: '1 while this process holds a lease on its in-process metadata (hits answered without a Redis read), else 0',
    registers: [registry],
    collect() {
      this.set(lease.trusted() ? 1 : 0);
    },
  });
  totalCounter(registry, 'maas_cache_lease_renewals_total', 'Lease renewals that took effect', () => lease.renewals);
}
