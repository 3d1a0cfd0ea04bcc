#!/usr/bin/env node
// `npm test`: every test file, two at a time (jest.config.cjs), then the files that measure throughput
// under load, alone. The fault suite compares goodput under overload with a peak it measured moments
// before; another file's servers on the same 2 cores can take most of the CPU in between (a clean-clone CI
// run saw 6.7 req/s of goodput against a 22.8 peak, where the suite alone gives 0.8-1.0 of peak).
// With arguments, it is plain jest: `npm test -- --testPathPatterns registry`.
'use strict';
const { spawnSync } = require('node:child_process');

const ALONE = ['apps/gateway/test/fault-suite'];
const jest = require.resolve('jest/bin/jest');
const run = (args) => spawnSync(process.execPath, [jest, ...args], { stdio: 'inherit' }).status ?? 1;

const args = process.argv.slice(2);
if (args.length > 0) process.exit(run(args));
// Both phases run whatever the first gives, so one failure does not hide another.
const { testPathIgnorePatterns } = require('../jest.config.cjs');
const shared = run(['--testPathIgnorePatterns', ...testPathIgnorePatterns, ...ALONE]);
const alone = run(['--maxWorkers', '1', '--testPathPatterns', ...ALONE]);
process.exit(shared || alone);
