import { status } from '@grpc/grpc-js';
import { statusOf } from '@maas/rpc';
import { ApiKeyAuthenticator, generateApiKey, hashApiKey, parseApiKeys } from './api-keys';

describe('ApiKeyAuthenticator', () => {
  const predictKey = generateApiKey();
  const adminKey = generateApiKey();
  const auth = new ApiKeyAuthenticator([
    { id: 'app', sha256: hashApiKey(predictKey), scopes: ['predict'], ratePerSecond: 2, burst: 2 },
    { id: 'ops', sha256: hashApiKey(adminKey), scopes: ['admin'] },
  ]);
  const codeOf = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return statusOf(err);
    }
    return status.OK;
  };

  it('maps missing, malformed, unknown, under-scoped and over-rate keys to their codes', () => {
    expect(codeOf(() => auth.authorize(undefined, 'predict'))).toBe(status.UNAUTHENTICATED);
    expect(codeOf(() => auth.authorize('Basic abc', 'predict'))).toBe(status.UNAUTHENTICATED);
    expect(codeOf(() => auth.authorize(`Bearer ${generateApiKey()}`, 'predict'))).toBe(status.UNAUTHENTICATED);
    expect(codeOf(() => auth.authorize(`Bearer ${predictKey}`, 'admin'))).toBe(status.PERMISSION_DENIED);
    expect(auth.authorize(`Bearer ${adminKey}`, 'predict')).toBe('ops');
    const t = 1_000_000;
    expect(auth.authorize(`Bearer ${predictKey}`, 'predict', t)).toBe('app');
    expect(auth.authorize(`Bearer ${predictKey}`, 'predict', t)).toBe('app');
    expect(codeOf(() => auth.authorize(`Bearer ${predictKey}`, 'predict', t))).toBe(status.RESOURCE_EXHAUSTED);
    expect(auth.authorize(`Bearer ${predictKey}`, 'predict', t + 600)).toBe('app'); // refilled
  });

  it('rejects key files that hold plain keys or bad scopes', () => {
    expect(() => parseApiKeys('[{"id":"a","sha256":"not-a-hash","scopes":["predict"]}]', 'keys.json')).toThrow(/sha256 of the key/);
    expect(() => parseApiKeys(`[{"id":"a","sha256":"${'a'.repeat(64)}","scopes":["root"]}]`, 'keys.json')).toThrow(/scopes/);
    expect(parseApiKeys(`[{"id":"a","sha256":"${'a'.repeat(64)}","scopes":["predict"]}]`, 'keys.json')).toHaveLength(1);
  });
});
