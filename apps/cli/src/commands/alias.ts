import type { Command } from 'commander';
import { CliError } from '../cli-error';
import type { Connection } from '../connection';

type Run = (fn: (conn: Connection) => Promise<void>) => () => Promise<void>;

function versionArg(text: string): number {
  const n = Number(text);
  if (!/^[1-9][0-9]*$/.test(text) || !Number.isSafeInteger(n)) throw new CliError(`version ${JSON.stringify(text)}: expected a positive integer`);
  return n;
}

/** `maas alias set|rm` and `maas archive`. */
export function registerAliasCommands(program: Command, run: Run): void {
  const alias = program.command('alias').description('point aliases (production, staging, ...) at versions');
  alias
    .command('set <model> <alias> <version>')
    .description('point an alias at a version')
    .action((model: string, name: string, version: string) =>
      run(async (conn) => {
        await conn.registry.setAlias(model, name, versionArg(version), conn.call());
        process.stdout.write(`${model}@${name} → ${version}\n`);
      })(),
    );
  alias
    .command('rm <model> <alias>')
    .description('remove an alias')
    .action((model: string, name: string) =>
      run(async (conn) => {
        await conn.registry.deleteAlias(model, name, conn.call());
        process.stdout.write(`removed ${model}@${name}\n`);
      })(),
    );
  program
    .command('archive <model> <version>')
    .description('archive a version (no alias may point at it)')
    .action((model: string, version: string) =>
      run(async (conn) => {
        await conn.registry.archiveVersion(model, versionArg(version), conn.call());
        process.stdout.write(`archived ${model}:${version}\n`);
      })(),
    );
}
