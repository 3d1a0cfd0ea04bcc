import { hostname } from 'node:os';
import { applyHeapGrowing, ConfigError, consulTokenOf, startIdleGc } from '@maas/config';
import { createRegistrar, SERVICE_REGISTRY, splitHostPort } from '@maas/discovery';
import { createLogger } from '@maas/observability';
import { setUnexpectedErrorReporter, tlsEnabled, tlsFilesOf } from '@maas/rpc';
import { loadRegistryConfig } from './config';
import { startRegistry } from './registry-app';

/** Composition root of the registry process: config → app → signals. */
async function main(): Promise<void> {
  let config;
  let consulToken: string | undefined;
  try {
    config = loadRegistryConfig(process.env);
    consulToken = consulTokenOf(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`registry: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  applyHeapGrowing(config);
  startIdleGc(config);
  const logger = createLogger({ name: 'registry', level: config.logLevel });
  setUnexpectedErrorReporter((err, method) => logger.error({ err, method }, 'unexpected error in handler'));
  const app = await startRegistry(config, { logger });
  logger.info(
    { address: app.address, port: app.port, metricsPort: app.metricsPort, dataDir: config.dataDir, host: hostname() },
    'listening',
  );
  const registrar = createRegistrar({ consulAddress: config.consulAddress || undefined, consulToken, logger });
  const advertised = config.advertiseAddress ? splitHostPort(config.advertiseAddress) : { host: config.host, port: app.port };
  const id = `registry-${hostname()}-${advertised.port}`;
  await registrar.register({ name: SERVICE_REGISTRY, id, address: advertised.host, port: advertised.port, advertiseVariable: 'REGISTRY_ADVERTISE_ADDRESS', meta: app.metricsPort ? { metrics_port: String(app.metricsPort) } : {}, check: { tls: tlsEnabled(tlsFilesOf(config)) } });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    registrar
      .shutdown()
      .then(() => app.shutdown())
      .then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`registry: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
