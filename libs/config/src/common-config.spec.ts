import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from './config-schema';
import { BUFFER_MALLOC_ENV, bufferMallocEnvFor, consulTokenOf, gatewayMallocEnv, JEMALLOC_CONF, JEMALLOC_IMAGE_PATH, jemallocPath } from './common-config';

describe('consulTokenOf', () => {
  const dir = mkdtempSync(join(tmpdir(), 'maas-token-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes CONSUL_HTTP_TOKEN, else the trimmed contents of CONSUL_HTTP_TOKEN_FILE, else none', () => {
    const file = join(dir, 'token');
    writeFileSync(file, '  b1ac-token\n');
    expect(consulTokenOf({ consulToken: 'direct', consulTokenFile: file })).toBe('direct');
    expect(consulTokenOf({ consulToken: '', consulTokenFile: file })).toBe('b1ac-token');
    expect(consulTokenOf({ consulToken: '', consulTokenFile: '' })).toBeUndefined();
  });

  it('refuses a token file that cannot be read or is empty, naming it', () => {
    const empty = join(dir, 'empty');
    writeFileSync(empty, '\n');
    expect(() => consulTokenOf({ consulToken: '', consulTokenFile: join(dir, 'missing') })).toThrow(ConfigError);
    expect(() => consulTokenOf({ consulToken: '', consulTokenFile: join(dir, 'missing') })).toThrow(/CONSUL_HTTP_TOKEN_FILE .*missing cannot be read/);
    expect(() => consulTokenOf({ consulToken: '', consulTokenFile: empty })).toThrow(/is empty: expected a Consul ACL token/);
  });
});

describe('bufferMallocEnvFor', () => {
  it('gives the relaying gateway jemalloc where installed, the registry the large-buffer settings, nodes and an embedded gateway none', () => {
    expect(bufferMallocEnvFor('apps/gateway/src/main.ts', {})).toEqual(gatewayMallocEnv(jemallocPath()));
    expect(bufferMallocEnvFor('/repo/apps/registry/src/main.ts', { REGISTRY_PORT: '0' })).toEqual(BUFFER_MALLOC_ENV);
    expect(bufferMallocEnvFor('apps/gateway/src/main.ts', { GATEWAY_EMBEDDED_NODE: 'on' })).toEqual({});
    expect(bufferMallocEnvFor('apps/inference/src/main.ts', {})).toEqual({});
    expect(bufferMallocEnvFor('bench/src/noop-server.ts', {})).toEqual({});
  });
});

describe('gatewayMallocEnv', () => {
  it('preloads jemalloc with glibc\'s large-buffer settings beside it, or gives those alone without jemalloc', () => {
    expect(gatewayMallocEnv('/lib/j.so')).toEqual({ LD_PRELOAD: '/lib/j.so', MALLOC_CONF: JEMALLOC_CONF, ...BUFFER_MALLOC_ENV });
    expect(gatewayMallocEnv(undefined)).toEqual(BUFFER_MALLOC_ENV);
    expect(jemallocPath(() => false)).toBeUndefined();
    expect(jemallocPath((p) => p === JEMALLOC_IMAGE_PATH)).toBe(JEMALLOC_IMAGE_PATH);
    expect(jemallocPath((p) => p.startsWith('/usr/lib/') && p.includes('-linux-gnu/'))).toMatch(/^\/usr\/lib\/(x86_64|aarch64)-linux-gnu\/libjemalloc\.so\.2$/);
  });

  it('runs node on jemalloc where it is installed (CI installs libjemalloc2), with the settings it is given', () => {
    const path = jemallocPath();
    if (!path) {
      expect(process.env.CI).toBeUndefined();
      return;
    }
    const out = execFileSync(process.execPath, ['-e', "process.stdout.write(require('fs').readFileSync('/proc/self/maps', 'utf8'))"], { env: { ...process.env, ...gatewayMallocEnv(path) }, encoding: 'utf8' });
    expect(out).toContain('libjemalloc.so.2');
    // jemalloc says what it cannot parse of MALLOC_CONF on stderr: nothing here.
    const run = spawnSync(process.execPath, ['-e', 'Buffer.alloc(1 << 20).fill(1)'], { env: { ...process.env, ...gatewayMallocEnv(path) }, encoding: 'utf8' });
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: '' });
  });
});
