import { credentials, Metadata, status, type Client, type ServiceError } from '@grpc/grpc-js';
import { StaticDiscovery, SERVICE_INFERENCE } from '@maas/discovery';
import { generateApiKey, hashApiKey } from '@maas/auth';
import { DataType, GatewayServiceClient, kserve, RegistryServiceClient } from '@maas/proto';
import { mlpModel } from '@maas/testing';
import { startNodeFixture, type NodeFixture } from '../../inference/test/node-fixture';
import { loadGatewayConfig } from '../src/config';
import { startGateway, type GatewayApp } from '../src/gateway-app';

type Who = 'none' | 'unknown' | 'predict' | 'admin';
type Unary = (req: object, md: Metadata, opts: object, cb: (err: ServiceError | null) => void) => void;

const input = { name: 'input', dtype: DataType.DATA_TYPE_FLOAT32, shape: [1, 4], rawData: Buffer.alloc(16), stringData: [] };

/** Every public unary RPC, with a request that succeeds for a caller allowed to make it, and the scope it needs. */
const RPCS: Array<{ service: 'gateway' | 'registry' | 'kserve'; method: string; scope: 'predict' | 'admin'; request: () => object }> = [
  { service: 'gateway', method: 'predict', scope: 'predict', request: () => ({ model: 'acl', version: 0, alias: '', inputs: [input], outputNames: [] }) },
  { service: 'gateway', method: 'modelMetadata', scope: 'predict', request: () => ({ model: 'acl', version: 0, alias: '' }) },
  { service: 'gateway', method: 'listModels', scope: 'predict', request: () => ({ pageSize: 0, pageToken: '', tag: '' }) },
  { service: 'gateway', method: 'listNodes', scope: 'predict', request: () => ({}) },
  { service: 'registry', method: 'getModel', scope: 'predict', request: () => ({ name: 'acl' }) },
  { service: 'registry', method: 'listModels', scope: 'predict', request: () => ({ pageSize: 0, pageToken: '', tag: '' }) },
  { service: 'registry', method: 'getVersion', scope: 'predict', request: () => ({ model: 'acl', version: 1 }) },
  { service: 'registry', method: 'listVersions', scope: 'predict', request: () => ({ model: 'acl', pageSize: 0, pageToken: '', includeArchived: false }) },
  { service: 'registry', method: 'resolve', scope: 'predict', request: () => ({ reference: 'acl' }) },
  { service: 'registry', method: 'createModel', scope: 'admin', request: () => ({ name: `new-${Math.random().toString(36).slice(2, 8)}`, description: '', tags: [] }) },
  { service: 'registry', method: 'updateModel', scope: 'admin', request: () => ({ name: 'acl', description: 'x', tags: [], replaceTags: false }) },
  { service: 'registry', method: 'setAlias', scope: 'admin', request: () => ({ model: 'acl', alias: 'staging', version: 1 }) },
  { service: 'registry', method: 'deleteAlias', scope: 'admin', request: () => ({ model: 'acl', alias: 'temp' }) },
  { service: 'registry', method: 'archiveVersion', scope: 'admin', request: () => ({ model: 'acl', version: 2 }) },
  { service: 'registry', method: 'deleteModel', scope: 'admin', request: () => ({ name: 'scratch' }) },
  { service: 'kserve', method: 'modelInfer', scope: 'predict', request: () => ({ modelName: 'acl', modelVersion: '', id: '', parameters: {}, inputs: [{ name: 'input', datatype: 'FP32', shape: [1n, 4n], parameters: {}, contents: undefined }], outputs: [], rawInputContents: [Buffer.alloc(16)] }) },
  { service: 'kserve', method: 'modelMetadata', scope: 'predict', request: () => ({ name: 'acl', version: '' }) },
  { service: 'kserve', method: 'modelConfig', scope: 'predict', request: () => ({ name: 'acl', version: '' }) },
  { service: 'kserve', method: 'modelStatistics', scope: 'predict', request: () => ({ name: 'acl', version: '' }) },
  { service: 'kserve', method: 'repositoryIndex', scope: 'predict', request: () => ({ repositoryName: '', ready: false }) },
  { service: 'kserve', method: 'repositoryModelLoad', scope: 'admin', request: () => ({ repositoryName: '', modelName: 'acl', parameters: {} }) },
  { service: 'kserve', method: 'repositoryModelUnload', scope: 'admin', request: () => ({ repositoryName: '', modelName: 'acl', parameters: {} }) },
];

describe('access control of every public RPC', () => {
  let f: NodeFixture;
  let gateway: GatewayApp;
  const keys = { predict: generateApiKey(), admin: generateApiKey() };
  const clients: Record<string, Client> = {};

  beforeAll(async () => {
    f = await startNodeFixture();
    await f.push('acl', mlpModel(), {}, ['production', 'temp']);
    await f.push('acl', mlpModel({ seed: 2 }));
    await f.registry.createModel('scratch');
    gateway = await startGateway(
      loadGatewayConfig({}, {
        port: 0,
        httpPort: 0,
        registryAddress: f.registryApp.address,
        apiKeys: JSON.stringify([
          { id: 'app', sha256: hashApiKey(keys.predict), scopes: ['predict'], ratePerSecond: 1000 },
          { id: 'ops', sha256: hashApiKey(keys.admin), scopes: ['admin'], ratePerSecond: 1000 },
        ]),
      }),
      { discovery: new StaticDiscovery({ [SERVICE_INFERENCE]: [f.node.address] }) },
    );
    clients.gateway = new GatewayServiceClient(gateway.address, credentials.createInsecure());
    clients.registry = new RegistryServiceClient(gateway.address, credentials.createInsecure());
    clients.kserve = new kserve.GRPCInferenceServiceClient(gateway.address, credentials.createInsecure());
  }, 60_000);

  afterAll(async () => {
    Object.values(clients).forEach((c) => c.close());
    await gateway.shutdown(1000);
    await f.stop();
  });

  const call = (rpc: (typeof RPCS)[number], who: Who) =>
    new Promise<number>((resolve) => {
      const md = new Metadata();
      if (who !== 'none') md.set('authorization', `Bearer ${who === 'unknown' ? generateApiKey() : keys[who]}`);
      const method = (clients[rpc.service] as unknown as Record<string, Unary>)[rpc.method].bind(clients[rpc.service]);
      method(rpc.request(), md, { deadline: new Date(Date.now() + 10_000) }, (err) => resolve(err ? err.code : status.OK));
    });

  // Admin calls run last within each caller so read checks see the model intact.
  const callers: Who[] = ['none', 'unknown', 'predict', 'admin'];
  for (const who of callers) {
    const label = { none: 'no key', unknown: 'an unknown key', predict: 'a predict key', admin: 'an admin key' }[who];
    it(`answers a caller with ${label} on every unary RPC as its scope allows`, async () => {
      const table: Record<string, string> = {};
      const expected: Record<string, string> = {};
      for (const rpc of RPCS) {
        const code = await call(rpc, who);
        table[`${rpc.service}.${rpc.method}`] = status[code];
        const allowed = who === 'admin' || (who === 'predict' && rpc.scope === 'predict');
        expected[`${rpc.service}.${rpc.method}`] = who === 'none' || who === 'unknown' ? 'UNAUTHENTICATED' : allowed ? 'OK' : 'PERMISSION_DENIED';
      }
      expect(table).toEqual(expected);
    });
  }
});
