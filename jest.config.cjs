// @ts-check
const { readFileSync } = require('node:fs');

// Maps each `@maas/<lib>` import to the lib's source, as tsconfig.base.json does.
const paths = JSON.parse(readFileSync(`${__dirname}/tsconfig.base.json`, 'utf8')).compilerOptions.paths;
const moduleNameMapper = {
  ...Object.fromEntries(Object.entries(paths).map(([name, [target]]) => [`^${name}$`, `<rootDir>/${target}`])),
  // Dynamic imports name the compiled file (`import('./connection.js')`, as Node's ESM rules ask): the source is the .ts.
  '^(\\.{1,2}/.*)\\.js$': '$1',
};

/** @type {import('jest').Config} */
module.exports = {
  rootDir: __dirname,
  testEnvironment: '<rootDir>/tools/jest-environment.cjs',
  globalSetup: '<rootDir>/tools/jest-global-setup.cjs',
  roots: ['<rootDir>'],
  testPathIgnorePatterns: ['/node_modules/', '/dist/'],
  testMatch: ['**/*.spec.ts', '**/test/**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022', parser: { syntax: 'typescript' } } }],
  },
  moduleNameMapper,
  testTimeout: 60_000,
  maxWorkers: 2,
  coveragePathIgnorePatterns: ['/node_modules/', '/libs/proto/src/gen/'],
};
