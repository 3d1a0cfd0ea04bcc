import { Counter, type Registry } from 'prom-client';

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
