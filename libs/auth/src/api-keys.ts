import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { PermissionDeniedError, ResourceExhaustedError, UnauthenticatedError } from '@maas/rpc';

/** What a key may do: `predict` (inference and reads) or `admin` (also registry writes). */
export type Scope = 'predict' | 'admin';

/** One configured key. Only its sha256 is ever stored. */
export interface ApiKeyEntry {
  id: string;
  /** Hex sha256 of the key. */
  sha256: string;
  scopes: Scope[];
  /** Sustained requests per second. @default 100 */
  ratePerSecond?: number;
  /** Requests allowed in a burst. @default 2 × ratePerSecond */
  burst?: number;
}

/** Hex sha256 of a key, as stored in the key file. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A new random key (`maas_` + 32 bytes base64url). */
export function generateApiKey(): string {
  return `maas_${randomBytes(32).toString('base64url')}`;
}

/** Parses and checks key entries (from the key file or GATEWAY_API_KEYS). */
export function parseApiKeys(text: string, source: string): ApiKeyEntry[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${source} is not JSON: ${(err as Error).message}; expected [{"id","sha256","scopes":["predict"|"admin"]}]`, { cause: err });
  }
  if (!Array.isArray(raw)) throw new Error(`${source} must be a JSON array of key entries`);
  return raw.map((entry: Partial<ApiKeyEntry>, i) => {
    const where = `${source} entry ${i}`;
    if (typeof entry.id !== 'string' || !entry.id) throw new Error(`${where}: "id" must be a non-empty string`);
    if (typeof entry.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(entry.sha256)) {
      throw new Error(`${where}: "sha256" must be the lower-case hex sha256 of the key (never the key itself)`);
    }
    if (!Array.isArray(entry.scopes) || entry.scopes.length === 0 || entry.scopes.some((s) => s !== 'predict' && s !== 'admin')) {
      throw new Error(`${where}: "scopes" must list "predict" and/or "admin"`);
    }
    if (entry.ratePerSecond !== undefined && !(entry.ratePerSecond > 0)) throw new Error(`${where}: "ratePerSecond" must be positive`);
    return { id: entry.id, sha256: entry.sha256, scopes: entry.scopes, ratePerSecond: entry.ratePerSecond, burst: entry.burst };
  });
}

interface Bucket {
  tokens: number;
  updated: number;
}

/**
 * Checks `authorization: Bearer <key>` against hashed keys, their scopes and
 * a per-key token bucket. Hashes are compared in constant time.
 */
export class ApiKeyAuthenticator {
  private readonly entries: Array<ApiKeyEntry & { digest: Buffer }>;
  private readonly buckets = new Map<string, Bucket>();

  constructor(entries: ApiKeyEntry[]) {
    this.entries = entries.map((e) => ({ ...e, digest: Buffer.from(e.sha256, 'hex') }));
  }

  get size(): number {
    return this.entries.length;
  }

  /** Returns the key id, or throws UNAUTHENTICATED / PERMISSION_DENIED / RESOURCE_EXHAUSTED. */
  authorize(authorization: string | undefined, scope: Scope, now = Date.now()): string {
    if (!authorization) {
      throw new UnauthenticatedError('missing credentials: send metadata "authorization: Bearer <api key>"');
    }
    const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
    if (!match) throw new UnauthenticatedError('malformed authorization metadata: expected "Bearer <api key>"');
    const digest = createHash('sha256').update(match[1], 'utf8').digest();
    let found: (typeof this.entries)[number] | undefined;
    for (const entry of this.entries) {
      // Compare against every entry, so timing says nothing about which one matched.
      if (timingSafeEqual(entry.digest, digest) && !found) found = entry;
    }
    if (!found) throw new UnauthenticatedError('unknown API key');
    if (!found.scopes.includes(scope) && !(scope === 'predict' && found.scopes.includes('admin'))) {
      throw new PermissionDeniedError(`API key "${found.id}" lacks scope "${scope}" (has: ${found.scopes.join(', ')})`);
    }
    this.take(found, now);
    return found.id;
  }

  private take(entry: ApiKeyEntry, now: number): void {
    const rate = entry.ratePerSecond ?? 100;
    const burst = entry.burst ?? rate * 2;
    const bucket = this.buckets.get(entry.id) ?? { tokens: burst, updated: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.updated) / 1000) * rate);
    bucket.updated = now;
    if (bucket.tokens < 1) {
      this.buckets.set(entry.id, bucket);
      throw new ResourceExhaustedError(`rate limit of API key "${entry.id}" exceeded: ${rate} requests/s with bursts of ${burst}; retry later`);
    }
    bucket.tokens -= 1;
    this.buckets.set(entry.id, bucket);
  }
}
