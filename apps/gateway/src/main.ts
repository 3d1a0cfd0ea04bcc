import { applyHeapGrowing, ConfigError, consulTokenOf, startIdleGc } from '@maas/config';
import { createRegistrar } from '@maas/discovery';
import { createLogger } from '@maas/observability';
import { setUnexpectedErrorReporter } from '@maas/rpc';
import type { Logger } from 'pino';
import { loadGatewayConfig, type GatewayConfig } from './config';
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
  startIdleGc(config);
  const logger = createLogger({ name: 'gateway', level: config.logLevel });
  setUnexpectedErrorReporter((err, method) => logger.error({ err, method }, 'unexpected error in handler'));
  const registrar = config.consulAddress ? createRegistrar({ consulAddress: config.consulAddress, consulToken, logger }) : undefined;
  const embedded = config.embeddedNode === 'on' ? await startEmbeddedNode(config, consulToken, logger) : undefined;
  const app = await startGateway(embedded ? { ...config, inferenceNodes: embedded.inferenceNodes } : config, {
    logger,
    registrar,
    consulToken,
    inProcessNode: embedded && { id: embedded.node.nodeId, address: embedded.node.address, predict: embedded.node.predictInProcess },
  });
  logger.info(
    {
      address: app.address,
      port: app.port,
      metricsPort: app.metricsPort,
      httpPort: app.httpPort,
      auth: config.auth,
      discovery: config.consulAddress ? `consul ${config.consulAddress}` : `static ${(embedded?.inferenceNodes ?? config.inferenceNodes).join(',')}`,
      embeddedNode: embedded ? { id: embedded.node.nodeId, address: embedded.node.address, port: embedded.node.port, metricsPort: embedded.node.metricsPort } : undefined,
    },
    'listening',
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // The gateway stops taking calls first; then the embedded node drains what it still runs.
    app.shutdown().then(() => embedded?.node.shutdown()).then(
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

/**
 * The inference node GATEWAY_EMBEDDED_NODE runs in this process, from the
 * INFERENCE_* variables; loaded only then, so a plain gateway never loads
 * onnxruntime. Without Consul the node joins the static list (is the list, when
 * INFERENCE_NODES is unset); with Consul it registers itself as any node does.
 */
async function startEmbeddedNode(config: GatewayConfig, consulToken: string | undefined, logger: Logger) {
  const { loadInferenceConfig } = await import('../../inference/src/config.js');
  const { startInferenceNode } = await import('../../inference/src/inference-app.js');
  let nodeConfig;
  try {
    nodeConfig = loadInferenceConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`gateway: embedded inference node (GATEWAY_EMBEDDED_NODE=on): ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  // METRICS_PORT is the gateway's: the node's metrics go on a free port, advertised in Consul.
  nodeConfig = { ...nodeConfig, metricsPort: config.metricsPort >= 0 ? 0 : -1 };
  const registrar = config.consulAddress ? createRegistrar({ consulAddress: config.consulAddress, consulToken, logger }) : undefined;
  const node = await startInferenceNode(nodeConfig, { logger: logger.child({ embedded: 'inference' }), registrar });
  const inferenceNodes = process.env.INFERENCE_NODES ? [...new Set([...config.inferenceNodes, node.address])] : [node.address];
  return { node, inferenceNodes };
}

main().catch((err: unknown) => {
  process.stderr.write(`gateway: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
