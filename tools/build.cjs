#!/usr/bin/env node
// Compiles the services and the CLI ahead of time, so they run as plain `node dist/<app>/main.js`
// (in the image, in compose, in `npm start`): one CommonJS file per app, the workspace's libraries
// compiled into it (tsconfig paths), npm packages left as requires of node_modules. Files an app
// reads beside its code at run time are copied next to the bundle.
//
//   node tools/build.cjs [app...]     (no app: all of them; nx runs it per app, cached)
'use strict';
const { build } = require('esbuild');
const { copyFileSync, mkdirSync, renameSync, writeFileSync } = require('node:fs');
const { dirname, join } = require('node:path');

const ROOT = join(__dirname, '..');

/** Each app's entry, and the files it reads at run time relative to its own code. */
const APPS = {
  registry: { entry: 'apps/registry/src/main.ts', assets: {} },
  inference: { entry: 'apps/inference/src/main.ts', assets: { 'session-thread.cjs': 'apps/inference/src/session-thread.cjs' } },
  // The gateway can run an inference node in its own process (GATEWAY_EMBEDDED_NODE), with the node's session threads.
  gateway: {
    entry: 'apps/gateway/src/main.ts',
    assets: { 'gen/gateway-descriptors.binpb': 'libs/proto/src/gen/gateway-descriptors.binpb', 'session-thread.cjs': 'apps/inference/src/session-thread.cjs' },
  },
  cli: { entry: 'apps/cli/src/main.ts', assets: {} },
};

/** esbuild's options for one entry (a path from the repository root) bundled into `outfile`. */
function bundleOptions(entry, outfile) {
  return {
    entryPoints: [join(ROOT, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    packages: 'external',
    tsconfig: join(ROOT, 'tsconfig.json'),
    sourcemap: 'linked',
    // No keepNames: the bundle is not minified, so functions keep their own names in stack traces,
    // and keepNames wraps every closure the hot path creates in an Object.defineProperty call
    // (2 % of the gateway's busy time at c=64, measured).
    logLevel: 'warning',
    // Marks the bundle, so code that finds files or entry points relative to itself knows it is compiled.
    define: { 'process.env.MAAS_COMPILED': '"1"' },
  };
}

async function buildApp(name) {
  const app = APPS[name];
  if (!app) throw new Error(`unknown app "${name}": expected one of ${Object.keys(APPS).join(', ')}`);
  const out = join(ROOT, 'dist', name);
  const started = Date.now();
  const result = await build({ ...bundleOptions(app.entry, join(out, 'main.js')), write: false });
  // Each file is written beside its place and renamed over it: a process starting from dist/ meanwhile
  // (a test, a running stack) sees the old file or the new one, never a missing or half-written one.
  const place = (path, write) => {
    mkdirSync(dirname(path), { recursive: true });
    const temporary = `${path}.${process.pid}.tmp`;
    write(temporary);
    renameSync(temporary, path);
  };
  for (const file of result.outputFiles) place(file.path, (to) => writeFileSync(to, file.contents));
  for (const [to, from] of Object.entries(app.assets)) place(join(out, to), (path) => copyFileSync(join(ROOT, from), path));
  process.stdout.write(`built dist/${name}/main.js in ${Date.now() - started} ms\n`);
}

async function main() {
  const names = process.argv.slice(2);
  for (const name of names.length > 0 ? names : Object.keys(APPS)) await buildApp(name);
}

module.exports = { bundleOptions };

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(`build failed: ${err.message}\n`);
    process.exit(1);
  });
}
