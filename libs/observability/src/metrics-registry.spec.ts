import { createMetricsRegistry } from './metrics-registry';

describe('createMetricsRegistry', () => {
  it('collects process metrics, event-loop lag included, when the service serves them', async () => {
    const registry = createMetricsRegistry('test-on', { defaultMetrics: true });
    const text = await registry.metrics();
    expect(text).toContain('maas_process_resident_memory_bytes{service="test-on"}');
    expect(text).toContain('maas_nodejs_eventloop_lag_p99_seconds{service="test-on"}');
  });

  it('leaves them out, and their event-loop sampling with them, when it does not', async () => {
    const registry = createMetricsRegistry('test-off', { defaultMetrics: false });
    const text = await registry.metrics();
    expect(text).not.toContain('maas_process_');
    expect(text).not.toContain('maas_nodejs_');
  });
});
