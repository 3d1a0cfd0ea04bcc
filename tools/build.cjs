#!/usr/bin/env node
// Compiles the services and the CLI ahead of time, so they run as plain `node dist/<app>/main.js`
// (in the image, in compose, in `npm start`): one CommonJS file per app, the workspace's libraries
// compiled into it (tsconfig paths), npm packages left as requires of node_modules. Files an app
// reads beside its code at run time are copied next to the bundle.
//
//   node tools/build.cjs [app...]     (no app: all of them; nx runs it per app, cached)
'use strict';
const { build } = require('esbuild');
const { copyFileSync, mkdirSync, rmSync } = require('node:fs');
const { join } = require('node:path');

const ROOT = join(__dirname, '..');

/** Each app's entry, and the files it reads at run time relative to its own code. */
const APPS = {
  registry: { entry: 'apps/registry/src/main.ts', assets: {} },
  inference: { entry: 'apps/inference/src/main.ts', assets: { 'session-thread.cjs': 'apps/inference/src/session-thread.cjs' } },
  gateway: { entry: 'apps/gateway/src/main.ts', assets: { 'gen/gateway-descriptors.binpb': 'libs/proto/src/gen/gateway-descriptors.binpb' } },
  cli: { entry: 'apps/cli/src/main.ts', assets: {} },
};

async function buildApp(name) {
  const app = APPS[name];
  if (!app) throw new Error(`unknown app "${name}": expected one of ${Object.keys(APPS).join(', ')}`);
  const out = join(ROOT, 'dist', name);
  rmSync(out, { recursive: true, force: true });
  const started = Date.now();
  await build({
    entryPoints: [join(ROOT, app.entry)],
    outfile: join(out, 'main.js'),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    packages: 'external',
    tsconfig: join(ROOT, 'tsconfig.json'),
    sourcemap: 'linked',
    // Stack traces name real functions; the output is read by people debugging a container.
    keepNames: true,
    logLevel: 'warning',
    // Marks the bundle, so code that finds files or entry points relative to itself knows it is compiled.
    define: { 'process.env.MAAS_COMPILED': '"1"' },
  });
  for (const [to, from] of Object.entries(app.assets)) {
    mkdirSync(join(out, to, '..'), { recursive: true });
    copyFileSync(join(ROOT, from), join(out, to));
  }
  process.stdout.write(`built dist/${name}/main.js in ${Date.now() - started} ms\n`);
}

async function main() {
  const names = process.argv.slice(2);
  for (const name of names.length > 0 ? names : Object.keys(APPS)) await buildApp(name);
}

main().catch((err) => {
  process.stderr.write(`build failed: ${err.message}\n`);
  process.exit(1);
});
