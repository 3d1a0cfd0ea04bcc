import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { parseAllDocuments } from 'yaml';
import { BUFFER_MALLOC_ENV, gatewayMallocEnv, JEMALLOC_IMAGE_PATH, parse } from '@maas/config';
import { REPO_ROOT } from '@maas/testing';
import { gatewayConfigSchema } from '../../gateway/src/config';
import { inferenceConfigSchema } from '../../inference/src/config';
import { registryConfigSchema } from '../../registry/src/config';
import { LIVENESS_SERVICE } from '@maas/rpc';

/**
 * deploy/k8s/base, checked without a cluster: every object against the
 * Kubernetes 1.33.0 OpenAPI schemas (the kubernetes-models 4.5.1 npm
 * package), then what MaaS needs of it.
 */
const BASE = join(REPO_ROOT, 'deploy/k8s/base');
type Manifest = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [key: string]: unknown };

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
};

/** Each MaaS service's compiled entry and the configuration it reads. */
const APPS: Record<string, { schema: Record<string, { env: string }>; malloc: Readonly<Record<string, string>> }> = {
  'dist/registry/main.js': { schema: registryConfigSchema, malloc: BUFFER_MALLOC_ENV },
  'dist/inference/main.js': { schema: inferenceConfigSchema, malloc: {} },
  'dist/gateway/main.js': { schema: gatewayConfigSchema, malloc: gatewayMallocEnv(JEMALLOC_IMAGE_PATH) },
};

const kustomization = parseAllDocuments(readFileSync(join(BASE, 'kustomization.yaml'), 'utf8'))[0].toJS() as {
  namespace: string;
  resources: string[];
  images: Array<{ name: string; newName: string; newTag: string }>;
};

/** The objects as `kubectl apply -k` would send them (namespace and image set by the kustomization). */
function rendered(): Manifest[] {
  const out: Manifest[] = [];
  for (const file of kustomization.resources) {
    for (const doc of parseAllDocuments(readFileSync(join(BASE, file), 'utf8'))) {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      const object = doc.toJS() as Manifest | null;
      if (!object) continue;
      if (object.kind !== 'Namespace') object.metadata.namespace = kustomization.namespace;
      out.push(object);
    }
  }
  return out;
}

function podSpecOf(object: Manifest): IPodSpec | undefined {
  return (object.spec as { template?: { spec: IPodSpec } } | undefined)?.template?.spec;
}

function bytes(quantity: string): number {
  const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(quantity);
  if (!m) throw new Error(`quantity ${quantity} is not in Ki/Mi/Gi`);
  return Number(m[1]) * { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m[2] ?? '']!;
}

describe('Kubernetes manifests (deploy/k8s/base)', () => {
  const objects = rendered();
  const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');
  const maas = workloads.flatMap((o) => podSpecOf(o)!.containers.filter((c) => c.image === 'maas').map((c) => ({ object: o, pod: podSpecOf(o)!, container: c })));

  it('lists every manifest of the folder in the kustomization', () => {
    const files = readdirSync(BASE).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...kustomization.resources].sort()).toEqual(files.sort());
    expect(kustomization.images.map((i) => i.name)).toEqual(['maas']);
  });

  it('validates every object against the Kubernetes 1.33 schemas', () => {
    for (const object of objects) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      expect({ object: `${object.kind}/${object.metadata.name}`, known: Boolean(Model) }).toEqual({ object: `${object.kind}/${object.metadata.name}`, known: true });
      expect(() => new Model(object as never).validate()).not.toThrow();
    }
    // The schemas do check types and required fields: a wrong one is refused.
    const broken = structuredClone(workloads[0]);
    (podSpecOf(broken)!.containers[0] as { ports: unknown }).ports = [{ containerPort: 'fifty' }];
    expect(() => new MODELS[`${broken.apiVersion}/${broken.kind}`](broken as never).validate()).toThrow(/containerPort/);
  });

  it('runs the registry as a StatefulSet with a volume claim, nodes and the gateway as Deployments, Redis and a dev Consul', () => {
    const kinds = Object.fromEntries(workloads.map((o) => [o.metadata.name, o.kind]));
    expect(kinds).toEqual({ consul: 'StatefulSet', redis: 'Deployment', registry: 'StatefulSet', inference: 'Deployment', gateway: 'Deployment' });
    const registry = workloads.find((o) => o.metadata.name === 'registry')!;
    const claims = (registry.spec as { volumeClaimTemplates: Array<{ metadata: { name: string } }> }).volumeClaimTemplates;
    const container = podSpecOf(registry)!.containers[0];
    const dataDir = container.env!.find((e) => e.name === 'REGISTRY_DATA_DIR')!.value!;
    const mount = container.volumeMounts!.find((m) => m.name === claims[0].metadata.name)!;
    expect(dataDir.startsWith(`${mount.mountPath}/`)).toBe(true);
    const services = objects.filter((o) => o.kind === 'Service').map((o) => o.metadata.name);
    expect(services).toEqual(expect.arrayContaining(['gateway', 'registry', 'redis', 'consul']));
    expect(readFileSync(join(BASE, 'consul.yaml'), 'utf8')).toMatch(/dev mode[^\n]*NOT a\n# production Consul/);
  });

  it('starts each MaaS service compiled, setting only variables its config reads', () => {
    expect(maas.map((m) => m.container.args?.[0]).sort()).toEqual(Object.keys(APPS).sort());
    for (const { container } of maas) {
      const entry = container.args![0];
      expect(existsSync(join(REPO_ROOT, entry))).toBe(true);
      const app = APPS[entry];
      const known = new Set([...Object.values(app.schema).map((f) => f.env), ...Object.keys(app.malloc)]);
      const env = container.env ?? [];
      // Downward-API values (the pod's IP and name) are allowed where another variable uses them as $(NAME).
      const referenced = new Set(env.flatMap((e) => [...(e.value ?? '').matchAll(/\$\(([A-Z_]+)\)/g)].map((m) => m[1])));
      for (const variable of env) {
        const ok = known.has(variable.name) || (variable.valueFrom?.fieldRef !== undefined && referenced.has(variable.name));
        expect({ entry, variable: variable.name, ok }).toEqual({ entry, variable: variable.name, ok: true });
      }
      expect(Object.fromEntries(env.filter((e) => e.name in app.malloc || e.name === 'LD_PRELOAD').map((e) => [e.name, e.value]))).toEqual(app.malloc);
    }
  });

  it("probes each MaaS service with Kubernetes' gRPC probes: readiness on grpc.health.v1 '', liveness on the name that stays SERVING while draining", () => {
    for (const { container } of maas) {
      const grpcPort = container.ports!.find((p) => p.name === 'grpc')!.containerPort;
      expect(container.readinessProbe?.grpc).toEqual({ port: grpcPort });
      expect(container.livenessProbe?.grpc).toEqual({ port: grpcPort, service: LIVENESS_SERVICE });
    }
  });

  it('gives every pod a termination grace longer than its preStop pause plus the node drain', () => {
    const drainMs = inferenceConfigSchema.drainTimeoutMs.default;
    for (const { object, pod, container } of maas) {
      const pause = Number((container.lifecycle?.preStop?.exec?.command ?? []).join(' ').match(/^sleep (\d+)$/)?.[1] ?? 0);
      expect({ name: object.metadata.name, fits: (pod.terminationGracePeriodSeconds ?? 30) * 1000 > pause * 1000 + drainMs }).toEqual({ name: object.metadata.name, fits: true });
    }
  });

  it('runs every container as non-root with no privilege escalation, all capabilities dropped, and requests and limits', () => {
    for (const object of workloads) {
      const pod = podSpecOf(object)!;
      expect({ name: object.metadata.name, nonRoot: pod.securityContext?.runAsNonRoot, uid: (pod.securityContext?.runAsUser ?? 0) > 0 }).toEqual({ name: object.metadata.name, nonRoot: true, uid: true });
      for (const container of pod.containers as IContainer[]) {
        const sc = container.securityContext;
        expect({ container: container.name, escalation: sc?.allowPrivilegeEscalation, drop: sc?.capabilities?.drop, readOnlyRoot: sc?.readOnlyRootFilesystem }).toEqual({ container: container.name, escalation: false, drop: ['ALL'], readOnlyRoot: true });
        for (const kind of ['requests', 'limits'] as const) {
          expect({ container: container.name, kind, cpu: Boolean(container.resources?.[kind]?.cpu), memory: Boolean(container.resources?.[kind]?.memory) }).toEqual({ container: container.name, kind, cpu: true, memory: true });
        }
      }
    }
  });

  it("sizes the node's memory from INFERENCE_MEMORY_BUDGET: the limit holds the budget plus room for Node and onnxruntime", () => {
    const node = maas.find((m) => m.container.args![0] === 'dist/inference/main.js')!.container;
    const budget = parse.byteSize(node.env!.find((e) => e.name === 'INFERENCE_MEMORY_BUDGET')!.value!);
    const limit = bytes(String(node.resources!.limits!.memory));
    expect(limit - budget).toBeGreaterThanOrEqual(512 * 1024 ** 2);
    expect(bytes(String(node.resources!.requests!.memory))).toBe(limit);
  });

  it('gives the gateway its API keys from a Secret, as a file', () => {
    const gateway = maas.find((m) => m.container.args![0] === 'dist/gateway/main.js')!;
    const file = gateway.container.env!.find((e) => e.name === 'GATEWAY_API_KEYS_FILE')!.value!;
    const mount = gateway.container.volumeMounts!.find((m) => file.startsWith(`${m.mountPath}/`))!;
    const volume = gateway.pod.volumes!.find((v) => v.name === mount.name)!;
    const secret = objects.find((o) => o.kind === 'Secret' && o.metadata.name === volume.secret?.secretName) as { stringData?: Record<string, string> } | undefined;
    expect(secret?.stringData).toHaveProperty([file.slice(mount.mountPath.length + 1)]);
    expect(gateway.container.env!.find((e) => e.name === 'GATEWAY_AUTH')?.value).toBe('on');
    expect(gateway.container.env!.some((e) => e.name === 'GATEWAY_API_KEYS')).toBe(false);
  });
});
