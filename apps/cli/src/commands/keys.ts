import type { Command } from 'commander';
import type { Scope } from '@maas/auth';
import { CliError } from '../cli-error';

/** `maas keys create`: mints a key and the entry to add to the gateway's key file. */
export function registerKeyCommands(program: Command): void {
  program
    .command('keys')
    .description('API keys for the gateway')
    .command('create')
    .description('mint a new API key; prints the key once and the hashed entry for GATEWAY_API_KEYS_FILE')
    .option('--id <id>', 'key id shown in logs and errors', `key-${Date.now().toString(36)}`)
    .option('--scope <scope...>', 'predict and/or admin', ['predict'])
    .option('--rate <n>', 'requests per second', '100')
    .action(async (opts: { id: string; scope: string[]; rate: string }) => {
      const { generateApiKey, hashApiKey } = await import('@maas/auth');
      for (const s of opts.scope) if (s !== 'predict' && s !== 'admin') throw new CliError(`--scope ${s}: expected predict or admin`);
      const rate = Number(opts.rate);
      if (!(rate > 0)) throw new CliError(`--rate ${opts.rate}: expected a positive number`);
      const key = generateApiKey();
      const entry = { id: opts.id, sha256: hashApiKey(key), scopes: opts.scope as Scope[], ratePerSecond: rate };
      process.stdout.write(`key (shown once, give it to the client as MAAS_API_KEY):\n${key}\n\nentry for GATEWAY_API_KEYS_FILE:\n${JSON.stringify(entry)}\n`);
    });
}
