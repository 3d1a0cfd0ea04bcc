import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BUFFER_MALLOC_ENV, gatewayMallocEnv, JEMALLOC_IMAGE_PATH } from '@maas/config';
import { SERVICE_GATEWAY, SERVICE_INFERENCE, SERVICE_REGISTRY } from '@maas/discovery';
import { REPO_ROOT } from '@maas/testing';
import { gatewayConfigSchema } from '../../gateway/src/config';
import { inferenceConfigSchema } from '../../inference/src/config';
import { registryConfigSchema } from '../../registry/src/config';

const composeFile = join(REPO_ROOT, 'docker-compose.yml');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

interface ComposeService {
  command?: string[];
  ports?: Array<string | { host_ip?: string; published?: string | number }>;
  stop_grace_period?: string;
  environment?: Record<string, string | null>;
  healthcheck?: { test: string[] };
  volumes?: string[];
  profiles?: string[];
}

/** The compose file as docker-compose resolves it (anchors and defaults applied). */
function resolvedCompose(): { services: Record<string, ComposeService>; volumes: Record<string, unknown> } {
  const yaml = execFileSync('docker-compose', ['-f', composeFile, 'config'], { encoding: 'utf8', env: { ...process.env, MAAS_GATEWAY_KEYS: '[]' } });
  const json = execFileSync('/usr/bin/python3', ['-c', 'import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'], { input: yaml, encoding: 'utf8' });
  return JSON.parse(json) as { services: Record<string, ComposeService>; volumes: Record<string, unknown> };
}

/** Each service's compiled entry (tools/build.cjs writes it; the image runs `node <entry>`) and its config schema. */
const schemas: Record<string, Record<string, { env: string }>> = {
  'dist/registry/main.js': registryConfigSchema,
  'dist/inference/main.js': inferenceConfigSchema,
  'dist/gateway/main.js': gatewayConfigSchema,
};

const available = has('docker-compose') && has('/usr/bin/python3');
if (!available) {
  // The Debian docker-compose package (installed by .ci/run) is what validates the file.
  console.warn('docker-compose.yml checks skipped: docker-compose (Debian package) is not installed here');
}

(available ? describe : describe.skip)('docker-compose.yml', () => {
  it('runs as it would: drains fit the stop grace, Consul on loopback only, light healthchecks, Prometheus targets from Consul', () => {
    const { services } = resolvedCompose();
    const seconds = (text = '') => Number(/^(\d+)s$/.exec(text)?.[1] ?? 0);
    for (const name of ['registry', 'inference-1', 'inference-2', 'gateway', 'gateway-embedded']) {
      expect({ name, grace: seconds(services[name].stop_grace_period) > inferenceConfigSchema.drainTimeoutMs.default / 1000 }).toEqual({ name, grace: true });
      // One small node process per probe: no CLI, no tsx, no onnxruntime.
      expect(services[name].healthcheck?.test.join(' ')).toMatch(/^CMD node -e .*\/healthz/);
    }
    expect(JSON.stringify(services.consul.ports)).toContain('127.0.0.1');
    const prometheus = JSON.parse(
      execFileSync('/usr/bin/python3', ['-c', 'import json,sys,yaml; print(json.dumps(yaml.safe_load(sys.stdin)))'], { input: readFileSync(join(REPO_ROOT, 'deploy/prometheus.yml'), 'utf8'), encoding: 'utf8' }),
    ) as { scrape_configs: Array<{ consul_sd_configs?: Array<{ server: string; services: string[] }>; relabel_configs?: Array<{ source_labels?: string[] }> }> };
    const job = prometheus.scrape_configs[0];
    expect(job.consul_sd_configs?.[0]).toMatchObject({ server: 'consul:8500' });
    expect([...job.consul_sd_configs![0].services].sort()).toEqual([SERVICE_GATEWAY, SERVICE_INFERENCE, SERVICE_REGISTRY].sort());
    expect(JSON.stringify(job.relabel_configs)).toContain('__meta_consul_service_metadata_metrics_port');
  });

  it('passes docker-compose config validation', () => {
    const result = spawnSync('docker-compose', ['-f', composeFile, 'config', '-q'], { encoding: 'utf8' });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  });

  it('runs compiled code: every MaaS service starts a dist/ entry the build writes, as plain node', () => {
    const { services } = resolvedCompose();
    for (const name of ['registry', 'inference-1', 'inference-2', 'gateway', 'gateway-embedded']) {
      const entry = services[name].command?.[0] ?? '';
      expect({ name, entry, known: entry in schemas }).toEqual({ name, entry, known: true });
      expect(existsSync(join(REPO_ROOT, entry))).toBe(true);
    }
    const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/ENTRYPOINT \["node"\]/);
    expect(dockerfile).not.toMatch(/tsx/);
    // The runtime stage has the jemalloc the relaying gateway preloads, at the path compose and the manifests give it.
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('FROM '));
    expect(runtime).toMatch(/apt-get install -y --no-install-recommends libjemalloc2/);
    expect(runtime).toContain(`ln -s "$(ls /usr/lib/*-linux-gnu/libjemalloc.so.2)" ${JEMALLOC_IMAGE_PATH}`);
  });

  it('runs consul, redis, registry, two nodes and the gateway with healthchecks and a named registry volume', () => {
    const { services, volumes } = resolvedCompose();
    expect(Object.keys(services).sort()).toEqual(expect.arrayContaining(['consul', 'redis', 'registry', 'inference-1', 'inference-2', 'gateway']));
    for (const name of ['registry', 'inference-1', 'inference-2', 'gateway', 'consul', 'redis']) {
      expect(services[name].healthcheck?.test.length).toBeGreaterThan(0);
    }
    expect(Object.keys(volumes)).toContain('registry-data');
    expect(services.registry.volumes?.join()).toContain('registry-data');
  });

  it('sets only variables each service reads, consistently across services', () => {
    const { services } = resolvedCompose();
    const seen: Record<string, Set<string>> = {};
    for (const [name, service] of Object.entries(services)) {
      const entry = service.command?.[0];
      if (!entry || !schemas[entry]) continue;
      // What the service's config reads (a gateway with its node embedded reads the node's too), and the malloc settings of the
      // relaying gateway (jemalloc, gatewayMallocEnv) and the registry (BUFFER_MALLOC_ENV); a gateway running onnxruntime keeps the defaults.
      const embeds = service.environment?.GATEWAY_EMBEDDED_NODE === 'on';
      const known = new Set([
        ...Object.values(schemas[entry]).map((f) => f.env),
        ...(embeds ? Object.values(inferenceConfigSchema).map((f) => f.env) : []),
        ...(/gateway/.test(entry) && !embeds ? Object.keys(gatewayMallocEnv(JEMALLOC_IMAGE_PATH)) : []),
        ...(/registry/.test(entry) ? Object.keys(BUFFER_MALLOC_ENV) : []),
      ]);
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        expect({ service: name, variable: key, known: known.has(key) }).toEqual({ service: name, variable: key, known: true });
        (seen[key] ??= new Set()).add(String(value));
      }
      // Every service finds Consul, and whoever caches metadata finds Redis.
      expect(service.environment).toMatchObject({ CONSUL_HTTP_ADDR: 'consul:8500' });
      if (known.has('REDIS_URL')) expect(service.environment).toMatchObject({ REDIS_URL: 'redis://redis:6379' });
    }
    expect([...seen.REGISTRY_ADDRESS]).toEqual(['registry:50051']);
    expect(services.gateway.environment).toMatchObject(gatewayMallocEnv(JEMALLOC_IMAGE_PATH));
    expect(services.registry.environment).toMatchObject(BUFFER_MALLOC_ENV);
    expect(services.registry.environment?.LD_PRELOAD).toBeUndefined();
    expect(services['inference-1'].environment?.INFERENCE_ADVERTISE_ADDRESS).toBe('inference-1:50061');
    expect(services['inference-2'].environment?.INFERENCE_ADVERTISE_ADDRESS).toBe('inference-2:50061');
    // The co-located layout: its node is reachable by the other gateway at the address it registers.
    expect(services['gateway-embedded'].environment).toMatchObject({ GATEWAY_EMBEDDED_NODE: 'on', INFERENCE_ADVERTISE_ADDRESS: 'gateway-embedded:50061', INFERENCE_HOST: '0.0.0.0' });
    expect(services['gateway-embedded'].profiles).toEqual(['embedded']);
    expect(services.registry.environment?.REGISTRY_ADVERTISE_ADDRESS).toBe(`registry:${services.registry.environment?.REGISTRY_PORT}`);
  });
});
