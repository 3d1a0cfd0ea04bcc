import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { IService } from 'kubernetes-models/v1/Service';
import { parseAllDocuments } from 'yaml';
import { gatewayMallocEnv, JEMALLOC_IMAGE_PATH, parse } from '@maas/config';
import { REPO_ROOT } from '@maas/testing';
import { LIVENESS_SERVICE } from '@maas/rpc';
import { gatewayConfigSchema } from '../../gateway/src/config';
import { inferenceConfigSchema } from '../../inference/src/config';

/**
 * deploy/k8s/embedded, the co-located layout over the base (checked as
 * kubernetes.test.ts checks the base): its objects against the Kubernetes
 * 1.33.0 schemas, then what a gateway with its node embedded needs.
 */
const DIR = join(REPO_ROOT, 'deploy/k8s/embedded');
const kustomization = parseAllDocuments(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'))[0].toJS() as { namespace: string; resources: string[]; images: Array<{ name: string }> };
const own = kustomization.resources.filter((r) => r.endsWith('.yaml'));
const objects = own.flatMap((file) => parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((d) => d.toJS() as { kind: string; metadata: { name: string; namespace?: string } }));
const deployment = objects.find((o) => o.kind === 'Deployment') as IDeployment;
const service = objects.find((o) => o.kind === 'Service') as IService;
const pod = deployment.spec!.template.spec!;
const container = pod.containers[0];
const env = (name: string) => container.env?.find((e) => e.name === name)?.value;
const bytes = (quantity: string) => {
  const m = /^(\d+)(Mi|Gi)$/.exec(quantity)!;
  return Number(m[1]) * (m[2] === 'Gi' ? 1024 ** 3 : 1024 ** 2);
};

describe('Kubernetes manifests (deploy/k8s/embedded)', () => {
  it('builds on the base and lists every manifest of its folder', () => {
    expect(kustomization.resources).toContain('../base');
    expect(existsSync(join(DIR, '../base/kustomization.yaml'))).toBe(true);
    expect(own.sort()).toEqual(readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort());
    expect(kustomization.namespace).toBe('maas');
    expect(kustomization.images.map((i) => i.name)).toEqual(['maas']);
  });

  it('validates against the Kubernetes 1.33 schemas', () => {
    expect(() => new Deployment(deployment as never).validate()).not.toThrow();
    expect(() => new Service(service as never).validate()).not.toThrow();
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(['Deployment/gateway-embedded', 'Service/gateway-embedded']);
  });

  it("runs the compiled gateway with its node embedded, setting only variables the gateway's or the node's config reads", () => {
    expect(container.args).toEqual(['dist/gateway/main.js']);
    expect(env('GATEWAY_EMBEDDED_NODE')).toBe('on');
    const known = new Set([...Object.values(gatewayConfigSchema), ...Object.values(inferenceConfigSchema)].map((f) => f.env));
    const referenced = new Set((container.env ?? []).flatMap((e) => [...(e.value ?? '').matchAll(/\$\(([A-Z_]+)\)/g)].map((m) => m[1])));
    for (const variable of container.env ?? []) {
      const ok = known.has(variable.name) || (variable.valueFrom?.fieldRef !== undefined && referenced.has(variable.name));
      expect({ variable: variable.name, ok }).toEqual({ variable: variable.name, ok: true });
    }
    // Other gateways reach the node at the pod address it registers, on a port the container declares.
    const nodePort = Number(env('INFERENCE_PORT'));
    expect(env('INFERENCE_ADVERTISE_ADDRESS')).toBe(`$(POD_IP):${nodePort}`);
    expect(container.ports?.map((p) => p.containerPort)).toContain(nodePort);
    expect(env('INFERENCE_NODE_ID')).toBe('$(POD_NAME)');
    // It runs onnxruntime, so it keeps glibc's malloc defaults as nodes do, not the relaying gateway's jemalloc or large-buffer settings.
    for (const name of Object.keys(gatewayMallocEnv(JEMALLOC_IMAGE_PATH))) expect(env(name)).toBeUndefined();
  });

  it('probes the gateway, drains within the grace period, and serves its own Service', () => {
    const grpc = container.ports!.find((p) => p.name === 'grpc')!.containerPort;
    expect(container.readinessProbe?.grpc).toEqual({ port: grpc });
    expect(container.livenessProbe?.grpc).toEqual({ port: grpc, service: LIVENESS_SERVICE });
    const pause = Number((container.lifecycle?.preStop?.exec?.command ?? []).join(' ').match(/^sleep (\d+)$/)?.[1] ?? 0);
    expect((pod.terminationGracePeriodSeconds ?? 30) * 1000).toBeGreaterThan(pause * 1000 + inferenceConfigSchema.drainTimeoutMs.default);
    expect(service.spec?.selector).toEqual(deployment.spec!.selector.matchLabels);
    expect(service.spec?.ports?.map((p) => p.targetPort)).toEqual(['grpc', 'http']);
  });

  it('runs locked down, with writable /cache and /tmp, the API keys from the base Secret, and memory for the node budget and the gateway', () => {
    expect(pod.securityContext?.runAsNonRoot).toBe(true);
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    const mounts = Object.fromEntries((container.volumeMounts ?? []).map((m) => [m.mountPath, m.name]));
    const volumes = Object.fromEntries((pod.volumes ?? []).map((v) => [v.name, v]));
    expect(volumes[mounts['/cache']]?.emptyDir).toBeDefined();
    expect(volumes[mounts['/tmp']]?.emptyDir).toBeDefined();
    expect(env('INFERENCE_CACHE_DIR')).toBe('/cache');
    const keysFile = env('GATEWAY_API_KEYS_FILE')!;
    const keysMount = (container.volumeMounts ?? []).find((m) => keysFile.startsWith(`${m.mountPath}/`))!;
    expect(volumes[keysMount.name]?.secret?.secretName).toBe('maas-gateway-keys');
    expect(readFileSync(join(DIR, '../base/gateway-keys-secret.yaml'), 'utf8')).toContain('name: maas-gateway-keys');
    const budget = parse.byteSize(env('INFERENCE_MEMORY_BUDGET')!);
    const limit = bytes(String(container.resources!.limits!.memory));
    expect(limit - budget).toBeGreaterThanOrEqual(1024 ** 3 + 512 * 1024 ** 2);
    expect(bytes(String(container.resources!.requests!.memory))).toBe(limit);
  });
});
