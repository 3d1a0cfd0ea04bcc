import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from './config-schema';
import { BUFFER_MALLOC_ENV, bufferMallocEnvFor, consulTokenOf } from './common-config';

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
  it('gives the relaying gateway and the registry the large-buffer settings, nodes and an embedded gateway none', () => {
    expect(bufferMallocEnvFor('apps/gateway/src/main.ts', {})).toEqual(BUFFER_MALLOC_ENV);
    expect(bufferMallocEnvFor('/repo/apps/registry/src/main.ts', { REGISTRY_PORT: '0' })).toEqual(BUFFER_MALLOC_ENV);
    expect(bufferMallocEnvFor('apps/gateway/src/main.ts', { GATEWAY_EMBEDDED_NODE: 'on' })).toEqual({});
    expect(bufferMallocEnvFor('apps/inference/src/main.ts', {})).toEqual({});
    expect(bufferMallocEnvFor('bench/src/noop-server.ts', {})).toEqual({});
  });
});
