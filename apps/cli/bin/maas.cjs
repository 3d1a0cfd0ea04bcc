#!/usr/bin/env node
// `maas` command. Runs the compiled CLI (dist/cli, built by `npm run build`) in this process; in a
// checkout that has not been built, runs the TypeScript source through tsx (a development tool).
'use strict';
const { existsSync } = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..', '..', '..');
const compiled = path.join(root, 'dist', 'cli', 'main.js');
if (existsSync(compiled)) {
  require(compiled);
} else {
  const { spawn } = require('node:child_process');
  process.stderr.write('maas: dist/cli is not built (npm run build); running the TypeScript source through tsx\n');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'apps/cli/src/main.ts'), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, TSX_TSCONFIG_PATH: path.join(root, 'tsconfig.json') },
  });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
}
