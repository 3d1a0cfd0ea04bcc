import { applyHeapGrowing, ConfigError, consulTokenOf, startIdleGc } from '@maas/config';
import { createRegistrar } from '@maas/discovery';
import { createLogger } from '@maas/observability';
import { setUnexpectedErrorReporter } from '@maas/rpc';
import { loadInferenceConfig } from './config';
import { startInferenceNode } from './inference-app';

/** Composition root of an inference node process: config → node → signals. */
async function main(): Promise<void> {
  let config;
  let consulToken: string | undefined;
  try {
    config = loadInferenceConfig(process.env);
    consulToken = consulTokenOf(config);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`inference: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  applyHeapGrowing(config);
  startIdleGc(config);
  const logger = createLogger({ name: 'inference', level: config.logLevel });
  setUnexpectedErrorReporter((err, method) => logger.error({ err, method }, 'unexpected error in handler'));
  const registrar = config.consulAddress ? createRegistrar({ consulAddress: config.consulAddress, consulToken, logger }) : undefined;
  const node = await startInferenceNode(config, { logger, registrar });
  logger.info({ address: node.address, port: node.port, framesPort: node.frames?.port, nodeId: node.nodeId, metricsPort: node.metricsPort, registry: config.registryAddress }, 'listening');
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining and shutting down');
    node.shutdown().then(
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
  process.stderr.write(`inference: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
