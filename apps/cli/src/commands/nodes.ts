import type { Command } from 'commander';
import type { Connection } from '../connection';

type Run = (fn: (conn: Connection) => Promise<void>) => () => Promise<void>;

/** `maas nodes` and `maas health`. */
export function registerNodeCommands(program: Command, run: Run): void {
  program
    .command('nodes')
    .description('healthy inference nodes the gateway routes to, and the versions each holds')
    .action(() =>
      run(async (conn) => {
        const { callUnary } = await import('@maas/rpc');
        const gw = conn.gateway;
        const { nodes } = await callUnary(gw.listNodes.bind(gw), {}, conn.call());
        if (conn.options.json) {
          process.stdout.write(`${JSON.stringify(nodes, null, 2)}\n`);
          return;
        }
        if (nodes.length === 0) process.stdout.write('no healthy inference nodes\n');
        for (const node of nodes) {
          process.stdout.write(`${node.id}  ${node.address}  in-flight=${node.inFlight}${node.error ? `  error: ${node.error}` : ''}\n`);
          for (const m of node.loaded) {
            process.stdout.write(`  ${m.model}:${m.version}  ${m.memoryBytes} B  queue=${m.queueDepth}  batching=${m.batching ? 'on' : 'off'}\n`);
          }
        }
      })(),
    );
  program
    .command('health')
    .description('grpc.health.v1 status of the gateway')
    .action(() =>
      run(async (conn) => {
        const [{ credentials, makeGenericClientConstructor }, { service: healthService }] = await Promise.all([import('@grpc/grpc-js'), import('grpc-health-check')]);
        const HealthClient = makeGenericClientConstructor(healthService, 'Health');
        const client = new HealthClient(conn.options.gateway, credentials.createInsecure());
        try {
          const answer = await new Promise<{ status: string | number }>((resolve, reject) =>
            (client as unknown as { check: (r: object, o: object, cb: (e: Error | null, r: { status: string | number }) => void) => void }).check(
              { service: '' },
              { deadline: new Date(Date.now() + conn.options.timeout) },
              (err, res) => (err ? reject(err) : resolve(res)),
            ),
          );
          const text = answer.status === 1 || answer.status === 'SERVING' ? 'SERVING' : String(answer.status);
          process.stdout.write(`${conn.options.gateway} ${text}\n`);
          if (text !== 'SERVING') process.exitCode = 1;
        } finally {
          client.close();
        }
      })(),
    );
}
