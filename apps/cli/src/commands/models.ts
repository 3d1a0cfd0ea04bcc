import type { Command } from 'commander';
import type { Model, ModelVersion } from '@maas/proto';
import type { Connection } from '../connection';

type Run = (fn: (conn: Connection) => Promise<void>) => () => Promise<void>;

function printModel(model: Model, versions: ModelVersion[]): void {
  const aliases = Object.entries(model.aliases).map(([a, v]) => `${a}→${v}`).join(', ') || '-';
  process.stdout.write(`${model.name}  latest=${model.latestVersion}  aliases=${aliases}  tags=${model.tags.join(',') || '-'}\n`);
  if (model.description) process.stdout.write(`  ${model.description}\n`);
  for (const v of versions) {
    const sig = v.inputs.map((i) => `${i.name}[${i.shape.join(',')}]`).join(' ');
    process.stdout.write(`  v${v.version}  ${v.state === 2 ? 'ARCHIVED' : 'READY'}  ${v.sizeBytes} B  sha256=${v.sha256.slice(0, 12)}…  inputs: ${sig}${v.aliases.length ? `  (${v.aliases.join(', ')})` : ''}\n`);
  }
}

/** `maas models list|show|create|delete`. */
export function registerModelCommands(program: Command, run: Run): void {
  const models = program.command('models').description('list, show, create and delete models');
  models
    .command('list')
    .description('list models (all pages)')
    .option('--tag <tag>', 'only models with this tag')
    .action((opts: { tag?: string }) =>
      run(async (conn) => {
        const all: Model[] = [];
        let pageToken = '';
        do {
          const page = await conn.registry.listModels({ tag: opts.tag, pageToken }, conn.call());
          all.push(...page.models);
          pageToken = page.nextPageToken;
        } while (pageToken);
        if (conn.options.json) process.stdout.write(`${JSON.stringify(all.map((m) => ({ ...m, createTime: m.createTime, updateTime: m.updateTime })), null, 2)}\n`);
        else if (all.length === 0) process.stdout.write('no models\n');
        else for (const m of all) printModel(m, []);
      })(),
    );
  models
    .command('show <model>')
    .description('show a model and its versions')
    .action((name: string) =>
      run(async (conn) => {
        const model = await conn.registry.getModel(name, conn.call());
        const versions = (await conn.registry.listVersions(name, { includeArchived: true, pageSize: 500 }, conn.call())).versions;
        if (conn.options.json) process.stdout.write(`${JSON.stringify({ model, versions }, null, 2)}\n`);
        else printModel(model, versions);
      })(),
    );
  models
    .command('create <model>')
    .description('create an empty model')
    .option('-d, --description <text>', 'description', '')
    .option('-t, --tag <tag...>', 'tags', [])
    .action((name: string, opts: { description: string; tag: string[] }) =>
      run(async (conn) => {
        const model = await conn.registry.createModel(name, opts.description, opts.tag, conn.call());
        process.stdout.write(conn.options.json ? `${JSON.stringify(model, null, 2)}\n` : `created model ${model.name}\n`);
      })(),
    );
  models
    .command('delete <model>')
    .description('delete a model with all its versions')
    .action((name: string) =>
      run(async (conn) => {
        await conn.registry.deleteModel(name, conn.call());
        process.stdout.write(`deleted model ${name}\n`);
      })(),
    );
}
