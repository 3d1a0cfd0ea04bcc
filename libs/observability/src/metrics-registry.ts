import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * How often the event-loop delay histogram (`maas_nodejs_eventloop_lag_*`)
 * samples, in ms: prom-client's `eventLoopMonitoringPrecision`, 10 by default.
 * Every sample is a timer that wakes the event loop, and on a virtual machine
 * a wake-up of an idle process is dear: `monitorEventLoopDelay` alone kept an
 * idle process busy 9.0–9.9 ms a second at 10 ms, 5.1 at 20 and 2.2 at 50
 * (0.12 without it; 2-core KVM machine). At 50 every stall of 50 ms or more
 * shows, and shorter ones in proportion to their length.
 */
export const LOOP_DELAY_SAMPLE_MS = 50;

/**
 * A Prometheus registry for one service process: every series carries a
 * `service` label, and process metrics (RSS, CPU, event-loop lag, GC) are
 * collected with the `maas_` prefix when `defaultMetrics` (a service passes
 * whether it serves /metrics: nothing else reads them, and their event-loop
 * sampling costs an idle process CPU; see {@link LOOP_DELAY_SAMPLE_MS}).
 */
export function createMetricsRegistry(service: string, options: { defaultMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'maas_', eventLoopMonitoringPrecision: LOOP_DELAY_SAMPLE_MS });
  return registry;
}
