import { RegistryClient } from '@maas/registry-client';
import { tempDir } from '@maas/testing';
import { loadRegistryConfig, type RegistryConfig } from '../src/config';
import { startRegistry, type RegistryApp } from '../src/registry-app';

/** A registry served in-process on a free port, with its own data folder and a client. */
export interface RegistryFixture {
  app: RegistryApp;
  client: RegistryClient;
  dataDir: string;
  /** Another client on its own channel. */
  newClient(): RegistryClient;
  stop(): Promise<void>;
}

export async function startRegistryFixture(overrides: Partial<RegistryConfig> = {}): Promise<RegistryFixture> {
  const dir = tempDir('maas-registry-');
  const config = loadRegistryConfig({}, { port: 0, dataDir: dir.path, ...overrides });
  const app = await startRegistry(config);
  const clients: RegistryClient[] = [];
  const newClient = () => {
    const client = new RegistryClient(app.address);
    clients.push(client);
    return client;
  };
  return {
    app,
    client: newClient(),
    dataDir: config.dataDir,
    newClient,
    async stop() {
      for (const client of clients) client.close();
      await app.shutdown(1000);
      dir.remove();
    },
  };
}
