import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { LATENCY_BUCKETS } from '@maas/observability';
import type { BatchEvent } from './dynamic-batcher';
import type { ModelManager } from './model-manager';

/** Prometheus series of an inference node: batching, queueing and loaded versions. */
export function registerInferenceMetrics(registry: Registry, manager: ModelManager): void {
  const batchSize = new Histogram({
    name: 'maas_inference_batch_size',
    help: 'Rows per onnxruntime run, by model and version',
    labelNames: ['model', 'version'],
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [registry],
  });
  const queue = new Histogram({
    name: 'maas_inference_queue_seconds',
    help: 'Time the oldest request of a batch waited before its run',
    labelNames: ['model', 'version'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const run = new Histogram({
    name: 'maas_inference_run_seconds',
    help: 'onnxruntime run time per batch',
    labelNames: ['model', 'version'],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const batches = new Counter({ name: 'maas_inference_batches_total', help: 'onnxruntime runs', labelNames: ['model', 'version'], registers: [registry] });
  // What onnxruntime itself costs, apart from the node's own work around it (the process's CPU minus this).
  const runCpu = new Counter({
    name: 'maas_inference_run_cpu_seconds_total',
    help: 'CPU time session threads spent in onnxruntime runs, by model and version (versions on session threads, Linux)',
    labelNames: ['model', 'version'],
    registers: [registry],
  });
  manager.events.on('batch', (event: BatchEvent & { model: string; version: number }) => {
    const labels = { model: event.model, version: String(event.version) };
    batchSize.observe(labels, event.rows);
    queue.observe(labels, event.queueSeconds);
    run.observe(labels, event.runSeconds);
    batches.inc(labels);
    if (event.cpuSeconds !== undefined) runCpu.inc(labels, event.cpuSeconds);
  });
  new Gauge({
    name: 'maas_inference_loaded_versions',
    help: 'Model versions loaded on this node',
    registers: [registry],
    collect() {
      this.set(manager.list().length);
    },
  });
  new Gauge({
    name: 'maas_inference_model_memory_bytes',
    help: 'Estimated memory held by each loaded version',
    labelNames: ['model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of manager.list()) this.set({ model: m.version.model, version: String(m.version.version) }, m.memoryBytes);
    },
  });
  new Gauge({
    name: 'maas_inference_memory_budget_bytes',
    help: 'Memory budget of this node for loaded versions',
    registers: [registry],
    collect() {
      this.set(manager.memoryBudgetBytes);
    },
  });
  new Gauge({
    name: 'maas_inference_queue_depth',
    help: 'Requests waiting in batch queues, by model and version',
    labelNames: ['model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of manager.list()) this.set({ model: m.version.model, version: String(m.version.version) }, m.batcher.queueDepth);
    },
  });
  new Gauge({
    name: 'maas_inference_batch_limit_rows',
    help: 'Most rows a batch of each loaded version carries now: max_batch_size, or the size adaptive batching measured fastest per row',
    labelNames: ['model', 'version'],
    registers: [registry],
    collect() {
      this.reset();
      for (const m of manager.list()) this.set({ model: m.version.model, version: String(m.version.version) }, m.batcher.batchLimit);
    },
  });
}
