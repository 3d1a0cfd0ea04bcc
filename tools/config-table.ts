// Prints the README's configuration table from the apps' config schemas
// (`npm run docs:config`); a test checks the README matches it.
import { describeConfig, type ConfigSchema } from '@maas/config';
import { gatewayConfigSchema } from '../apps/gateway/src/config';
import { inferenceConfigSchema } from '../apps/inference/src/config';
import { registryConfigSchema } from '../apps/registry/src/config';

/** Markdown table rows: variable, services that read it, default, meaning. */
export function configTable(): string {
  const apps: Array<[string, ConfigSchema]> = [
    ['registry', registryConfigSchema],
    ['inference', inferenceConfigSchema],
    ['gateway', gatewayConfigSchema],
  ];
  const rows = new Map<string, { services: string[]; default: string; doc: string }>();
  for (const [app, schema] of apps) {
    for (const row of describeConfig(schema)) {
      const existing = rows.get(row.env);
      if (existing) existing.services.push(app);
      else rows.set(row.env, { services: [app], default: row.default, doc: row.doc });
    }
  }
  const lines = ['| Variable | Read by | Default | Meaning |', '|---|---|---|---|'];
  for (const [env, row] of rows) {
    lines.push(`| \`${env}\` | ${row.services.join(', ')} | \`${row.default.replace(/\|/g, '\\|')}\` | ${row.doc.replace(/\|/g, '\\|')} |`);
  }
  return lines.join('\n');
}

if (require.main === module) process.stdout.write(`${configTable()}\n`);
