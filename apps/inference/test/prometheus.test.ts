import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, mlpModel, tempDir, waitFor } from '@maas/testing';
import { floatTensor, startNodeFixture, type NodeFixture } from './node-fixture';

const prometheus = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' }).stdout.trim();
if (!prometheus) console.warn('Prometheus scrape test skipped: the Debian prometheus package is not installed (.ci/run installs it)');

(prometheus ? describe : describe.skip)('a real Prometheus scraping an inference node', () => {
  const dir = tempDir('maas-prometheus-');
  let f: NodeFixture;
  let prom: ChildProcess;
  let promPort: number;

  beforeAll(async () => {
    f = await startNodeFixture({ metricsPort: 0 });
    promPort = await freePort();
    const config = join(dir.path, 'prometheus.yml');
    writeFileSync(
      config,
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: maas\n    static_configs:\n      - targets: ["127.0.0.1:${f.node.metricsPort}"]\n`,
    );
    prom = spawn(prometheus, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir.path, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`], {
      stdio: 'ignore',
    });
  }, 60_000);

  /** The result of an instant query on the scraping Prometheus. */
  const query = async (q: string) => {
    const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
    const body = (await res.json()) as { data?: { result: Array<{ metric: Record<string, string>; value: [number, string] }> } };
    return body.data?.result ?? [];
  };

  afterAll(async () => {
    prom.kill('SIGTERM');
    await new Promise((resolve) => prom.once('exit', resolve));
    await f.stop();
    dir.remove();
  });

  it('finds per-model request and batch-size series through its query API', async () => {
    const version = await f.push('scraped', mlpModel());
    for (let i = 0; i < 5; i++) await f.predict('scraped', version, [floatTensor('input', [1, 4], [1, 2, 3, 4])]);
    const requests = await waitFor(
      async () => {
        const result = await query('maas_rpc_requests_total{method="Predict",model="scraped",code="OK"}');
        return result.length > 0 && Number(result[0].value[1]) >= 5 ? result : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250, description: 'prometheus to scrape the node' },
    );
    expect(requests[0].metric).toMatchObject({ service: 'inference', version: String(version), job: 'maas' });
    const batches = await query('maas_inference_batch_size_count{model="scraped"}');
    expect(Number(batches[0].value[1])).toBeGreaterThanOrEqual(1);
    // Runs on the event loop's thread have no CPU time of their own to report.
    expect(await query('maas_inference_run_cpu_seconds_total{model="scraped"}')).toEqual([]);
  });

  it('has the CPU time of onnxruntime runs for a version on session threads', async () => {
    const version = await f.push('threaded', mlpModel(), { instanceCount: 2 });
    for (let i = 0; i < 5; i++) await f.predict('threaded', version, [floatTensor('input', [1, 4], [1, 2, 3, 4])]);
    const series = await waitFor(
      async () => {
        const result = await query('maas_inference_run_cpu_seconds_total{model="threaded"}');
        return result.length > 0 ? result : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 250, description: 'prometheus to scrape the run CPU series' },
    );
    expect(series[0].metric).toMatchObject({ model: 'threaded', version: String(version) });
    // A tiny model's runs are shorter than the kernel's accounting tick, so the sum may still read 0.
    expect(Number(series[0].value[1])).toBeGreaterThanOrEqual(0);
  });
});
