import { Command, Option } from 'commander';
import { registerAliasCommands } from './commands/alias';
import { registerDevCommand } from './commands/dev';
import { registerKeyCommands } from './commands/keys';
import { registerModelCommands } from './commands/models';
import { registerNodeCommands } from './commands/nodes';
import { registerPredictCommand } from './commands/predict';
import { registerPushCommand } from './commands/push';
import type { Connection, GlobalOptions } from './connection';

// Only commander and the commands' declarations load up front: each command imports gRPC, the
// protocol code and the rest when it runs, so `maas --help` starts in a fraction of the time.
const formatError = async (err: unknown) => (await import('./format-error.js')).formatError(err);

const program = new Command('maas')
  .description('MaaS command line: models, versions, aliases and predictions through the gateway')
  .addOption(new Option('-g, --gateway <host:port>', 'gateway address').env('MAAS_GATEWAY').default('127.0.0.1:50050'))
  .addOption(new Option('-k, --api-key <key>', 'API key (sent as authorization: Bearer)').env('MAAS_API_KEY'))
  .addOption(new Option('--timeout <ms>', 'deadline of each call in milliseconds').default('30000'))
  .addOption(new Option('--tls-ca <file>', 'PEM CA that signed the gateway certificate: connect with TLS').env('MAAS_TLS_CA'))
  .addOption(new Option('--tls-cert <file>', 'PEM client certificate, for a gateway that requires one (mTLS)').env('MAAS_TLS_CERT'))
  .addOption(new Option('--tls-key <file>', 'PEM key of --tls-cert').env('MAAS_TLS_KEY'))
  .option('--json', 'print JSON instead of text')
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

/** Runs a command body with a connection, printing failures as one line and exiting non-zero. */
const run = (fn: (conn: Connection) => Promise<void>) => async () => {
  const opts = program.opts<{ gateway: string; apiKey?: string; json?: boolean; timeout: string; tlsCa?: string; tlsCert?: string; tlsKey?: string }>();
  const timeout = Number(opts.timeout);
  if (!Number.isInteger(timeout) || timeout <= 0) {
    process.stderr.write(`error: --timeout ${opts.timeout}: expected a positive number of milliseconds\n`);
    process.exit(2);
  }
  const options: GlobalOptions = {
    gateway: opts.gateway,
    apiKey: opts.apiKey,
    json: opts.json,
    timeout,
    tls: { certFile: opts.tlsCert ?? '', keyFile: opts.tlsKey ?? '', caFile: opts.tlsCa ?? '', clientAuth: 'none' },
  };
  let conn: Connection;
  try {
    const { Connection } = await import('./connection.js');
    conn = new Connection(options);
  } catch (err) {
    process.stderr.write(`${await formatError(err)}\n`);
    process.exit(2);
  }
  try {
    await fn(conn);
  } catch (err) {
    process.stderr.write(`${await formatError(err)}\n`);
    process.exitCode = 1;
  } finally {
    conn.close();
  }
};

registerModelCommands(program, run);
registerPushCommand(program, run);
registerAliasCommands(program, run);
registerPredictCommand(program, run);
registerNodeCommands(program, run);
registerKeyCommands(program);
registerDevCommand(program);

program.parseAsync(process.argv).catch(async (err: unknown) => {
  process.stderr.write(`${await formatError(err)}\n`);
  process.exit(1);
});
