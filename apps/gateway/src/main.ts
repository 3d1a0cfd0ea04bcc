import { applyHeapGrowing, ConfigError, consulTokenOf } from '@maas/config';
import { createRegistrar } from '@maas/discovery';
import { createLogger } from '@maas/observability';
import { setUnexpectedErrorReporter } from '@maas/rpc';
import { loadGatewayConfig } from './config';
import { startGateway } from './gateway-app';

/** Composition root of the gateway process: config → app → signals. */
async function main(): Promise<void> {
  let config;
  let consulToken: string | undefined;
  try {
    config = loadGatewayConfig(process.env);
    consulToken = consulTokenOf(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`gateway: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  applyHeapGrowing(config);
  const logger = createLogger({ name: 'gateway', level: config.logLevel });
  setUnexpectedErrorReporter((err, method) => logger.error({ err, method }, 'unexpected error in handler'));
  const registrar = config.consulAddress ? createRegistrar({ consulAddress: config.consulAddress, consulToken, logger }) : undefined;
  const app = await startGateway(config, { logger, registrar, consulToken });
  logger.info(
    {
      address: app.address,
      port: app.port,
      metricsPort: app.metricsPort,
      httpPort: app.httpPort,
      auth: config.auth,
      discovery: config.consulAddress ? `consul ${config.consulAddress}` : `static ${config.inferenceNodes.join(',')}`,
    },
    'listening',
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    app.shutdown().then(
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
  process.stderr.write(`gateway: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
