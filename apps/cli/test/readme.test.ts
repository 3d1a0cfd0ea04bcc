import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '@maas/testing';
import { configTable } from '../../../tools/config-table';

const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const maasHelp = (...args: string[]) =>
  execFileSync(process.execPath, [join(REPO_ROOT, 'apps/cli/bin/maas.cjs'), ...args, '--help'], { cwd: REPO_ROOT, encoding: 'utf8' });

describe('README', () => {
  it('starts with the run and test commands', () => {
    const top = readme.slice(0, 1200);
    expect(top).toContain('npm ci && npm start');
    expect(top).toContain('npm ci && npm test');
  });

  it('holds the configuration table generated from the config schemas', () => {
    expect(readme).toContain(configTable());
  });

  it('only shows CLI commands the CLI has', () => {
    const commands = new Set([...readme.matchAll(/^npx maas (?:--gateway \S+ )?([a-z]+)(?: ([a-z]+))?/gm)].map((m) => `${m[1]} ${m[2] ?? ''}`.trim()));
    const top = maasHelp();
    const groups: Record<string, string> = { models: maasHelp('models'), alias: maasHelp('alias'), keys: maasHelp('keys') };
    for (const command of commands) {
      const [first, second] = command.split(' ');
      expect({ command, known: new RegExp(`^  ${first}\\b`, 'm').test(top) }).toEqual({ command, known: true });
      if (second && groups[first]) expect({ command, known: new RegExp(`^  ${second}\\b`, 'm').test(groups[first]) }).toEqual({ command, known: true });
    }
  });
});
