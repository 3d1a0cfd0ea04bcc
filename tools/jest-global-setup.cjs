// Builds dist/ before any test runs (about a second), so tests that start the compiled CLI or
// services run what the sources say now, never an older build.
'use strict';
const { execFileSync } = require('node:child_process');
const { join } = require('node:path');

module.exports = async () => {
  execFileSync(process.execPath, [join(__dirname, 'build.cjs')], { stdio: ['ignore', 'ignore', 'inherit'] });
};
