import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * A Prometheus registry for one service process: every series carries a
 * `service` label, and process metrics (RSS, CPU, event-loop lag, GC) are
 * collected with the `maas_` prefix.
 */
export function createMetricsRegistry(service: string, options: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'maas_' });
  return registry;
}
