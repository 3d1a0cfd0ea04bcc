#!/usr/bin/env node
// Removes from a production node_modules what a Linux container never loads: onnxruntime-node's
// native builds for macOS, Windows and the other CPU architecture (about 245 of its 288 MB).
// The image's dependency stage runs it after `npm ci --omit=dev`.
//
//   node tools/slim-node-modules.cjs [node_modules] [--arch x64|arm64]   (default: ./node_modules, this machine's arch)
'use strict';
const { existsSync, readdirSync, rmSync, statSync } = require('node:fs');
const { join, resolve } = require('node:path');

function sizeOf(path) {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.size;
  return readdirSync(path).reduce((sum, entry) => sum + sizeOf(join(path, entry)), 0);
}

/** Deletes every onnxruntime-node binary folder but bin/napi-vN/linux/<arch>; returns the bytes removed. */
function slim(nodeModules, arch) {
  const bin = join(nodeModules, 'onnxruntime-node', 'bin');
  if (!existsSync(bin)) throw new Error(`${bin} does not exist: run npm ci --omit=dev first`);
  let removed = 0;
  for (const napi of readdirSync(bin)) {
    for (const platform of readdirSync(join(bin, napi))) {
      for (const cpu of readdirSync(join(bin, napi, platform))) {
        if (platform === 'linux' && cpu === arch) continue;
        const path = join(bin, napi, platform, cpu);
        removed += sizeOf(path);
        rmSync(path, { recursive: true, force: true });
      }
    }
  }
  const kept = join(bin, readdirSync(bin)[0] ?? '', 'linux', arch);
  if (!existsSync(kept)) throw new Error(`onnxruntime-node has no build for linux/${arch}`);
  return removed;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const archAt = args.indexOf('--arch');
  const arch = archAt >= 0 ? args[archAt + 1] : process.arch;
  const dir = resolve(args.find((a, i) => !a.startsWith('--') && i !== archAt + 1) ?? 'node_modules');
  const before = sizeOf(dir);
  const removed = slim(dir, arch);
  const mb = (n) => `${(n / 1024 / 1024).toFixed(0)} MB`;
  process.stdout.write(`slimmed ${dir} for linux/${arch}: ${mb(before)} -> ${mb(before - removed)}\n`);
}

module.exports = { slim, sizeOf };
