import { resolve } from 'node:path';
import type { Command } from 'commander';

const DEMO_MODEL = 'demo';

/** `maas dev` (what `npm start` runs): the whole stack on this machine, with a demo model. */
export function registerDevCommand(program: Command): void {
  program
    .command('dev')
    .description('run registry, two inference nodes and the gateway locally, with a demo model')
    .option('--data-dir <dir>', 'where the registry and node caches keep data', '.maas')
    .option('--free-ports', 'bind free ports instead of 50050 (gateway), 50051 (registry), 50061-50062 (nodes)')
    .option('--quiet', 'do not echo the services’ logs')
    .action(async (opts: { dataDir: string; freePorts?: boolean; quiet?: boolean }) => {
      const [{ status }, { mlpModel }, { RegistryClient }, { statusOf }, { DEFAULT_PORTS, FREE_PORTS, startDevStack }] = await Promise.all([
        import('@grpc/grpc-js'),
        import('@maas/onnx'),
        import('@maas/registry-client'),
        import('@maas/rpc'),
        import('../dev-stack.js'),
      ]);
      const log = opts.quiet ? () => undefined : (line: string) => process.stdout.write(`${line}\n`);
      const stack = await startDevStack({ ports: opts.freePorts ? FREE_PORTS : DEFAULT_PORTS, dataDir: resolve(opts.dataDir), log });
      let stopping = false;
      const shutdown = async (code: number) => {
        if (stopping) return;
        stopping = true;
        process.stdout.write('stopping the stack...\n');
        const codes = await stack.stop();
        const clean = codes.every((c) => c === 0);
        process.stdout.write(clean ? 'stopped cleanly\n' : `stopped; exit codes ${codes.join(', ')}\n`);
        process.exit(clean ? code : 1);
      };
      process.on('SIGINT', () => void shutdown(0));
      process.on('SIGTERM', () => void shutdown(0));
      for (const p of stack.processes) {
        void p.exited.then((code) => {
          if (!stopping) {
            process.stderr.write(`error: ${p.name} exited unexpectedly (${code}); stopping the rest\n`);
            void shutdown(1);
          }
        });
      }

      const registry = new RegistryClient(stack.registryAddress);
      try {
        await registry.createModel(DEMO_MODEL, 'a small generated MLP: input float32[batch,4] → output float32[batch,3]', ['demo']).catch((err: unknown) => {
          if (statusOf(err) !== status.ALREADY_EXISTS) throw err;
        });
        const model = await registry.getModel(DEMO_MODEL);
        if (!model.aliases.production) {
          const version = await registry.upload(
            { model: DEMO_MODEL, description: 'demo', sha256: '', sizeBytes: 0, runtime: undefined, aliases: ['production'] },
            [mlpModel({ seed: 42 })],
          );
          process.stdout.write(`registered demo model ${DEMO_MODEL}:${version.version} (alias production)\n`);
        }
      } finally {
        registry.close();
      }
      const auth = (process.env.GATEWAY_AUTH || 'off') === 'off';
      process.stdout.write(
        [
          '',
          `MaaS is running. Gateway: ${stack.gatewayAddress} (gRPC), http://${stack.gatewayHttpAddress}/v2 (REST)${auth ? ' (API-key auth OFF: loopback development only)' : ''}`,
          'Try:',
          `  npx maas --gateway ${stack.gatewayAddress} predict demo --input 'input=[[1,2,3,4]]'`,
          `  npx maas --gateway ${stack.gatewayAddress} nodes`,
          `  curl -s http://${stack.gatewayHttpAddress}/v2/models/demo/infer -d '{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}]}'`,
          'Ctrl-C stops everything.',
          '',
        ].join('\n'),
      );
    });
}
