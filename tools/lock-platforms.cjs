#!/usr/bin/env node
// Adds lockfile entries for other platforms' optional native packages (nx, swc, unrs-resolver).
// The registry mirror these machines use does not serve them, so `npm install` leaves them out of
// package-lock.json and `npm ci` then refuses the lockfile. Each added entry carries only version,
// os, cpu and libc, so npm skips it as platform-incompatible. Run after every `npm install`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const lockPath = path.join(__dirname, '..', 'package-lock.json');
const lock = JSON.parse(fs.readFileSync(lockPath, 'utf8'));
const OSES = ['darwin', 'linux', 'win32', 'freebsd', 'android', 'openharmony'];
const CPUS = ['arm64', 'x64', 'ia32', 'arm', 'ppc64', 's390x', 'loong64', 'riscv64'];

function platformOf(name) {
  const base = name.split('/').pop();
  const os = OSES.find((o) => base.includes(o));
  const cpu = CPUS.find((c) => new RegExp(`-${c}(-|$)`).test(base));
  if (!os || !cpu) return undefined;
  const entry = { os: [os], cpu: [cpu] };
  if (os === 'linux') entry.libc = [base.includes('musl') ? 'musl' : 'glibc'];
  return entry;
}

let added = 0;
for (const [key, pkg] of Object.entries(lock.packages)) {
  for (const [dep, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    const depKey = `${key ? `${key}/` : ''}node_modules/${dep}`;
    const hoisted = `node_modules/${dep}`;
    if (lock.packages[depKey] || lock.packages[hoisted]) continue;
    const platform = platformOf(dep);
    if (!platform) continue;
    lock.packages[hoisted] = { version, optional: true, ...platform };
    added += 1;
  }
}
fs.writeFileSync(lockPath, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`lock-platforms: added ${added} platform entries`);
