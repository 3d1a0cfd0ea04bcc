import type { RuntimeConfig } from '@maas/proto';
import { InvalidArgumentError, validateAlias } from '@maas/rpc';

const TAG_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:=/-]{0,62}$/;
const MAX_TAGS = 32;
const MAX_DESCRIPTION = 4096;

/** Tags as stored: valid, unique, sorted. */
export function validateTags(tags: string[]): string[] {
  if (tags.length > MAX_TAGS) throw new InvalidArgumentError(`${tags.length} tags given: expected at most ${MAX_TAGS}`);
  for (const tag of tags) {
    if (!TAG_PATTERN.test(tag)) {
      throw new InvalidArgumentError(
        `tag ${JSON.stringify(tag)} is invalid: expected 1-63 characters of letters, digits, ".", "_", ":", "=", "/" or "-", starting with a letter or digit`,
      );
    }
  }
  return [...new Set(tags)].sort();
}

export function validateDescription(description: string): string {
  if (description.length > MAX_DESCRIPTION) {
    throw new InvalidArgumentError(`description has ${description.length} characters: expected at most ${MAX_DESCRIPTION}`);
  }
  return description;
}

export function validateAliases(aliases: string[]): string[] {
  return [...new Set(aliases.map((a) => validateAlias(a)))];
}

/** Registry defaults for a version's runtime config. */
export const DEFAULT_RUNTIME: RuntimeConfig = {
  maxBatchSize: 32,
  maxQueueDelayMicros: 0,
  instanceCount: 1,
  maxQueueSize: 1024,
};

const RUNTIME_LIMITS: Record<keyof RuntimeConfig, number> = {
  maxBatchSize: 4096,
  maxQueueDelayMicros: 10_000_000,
  instanceCount: 16,
  maxQueueSize: 1_000_000,
};

const RUNTIME_FIELDS: Record<keyof RuntimeConfig, string> = {
  maxBatchSize: 'max_batch_size',
  maxQueueDelayMicros: 'max_queue_delay_micros',
  instanceCount: 'instance_count',
  maxQueueSize: 'max_queue_size',
};

/** The runtime config to record: zero fields take the defaults, out-of-range ones are rejected. */
export function resolveRuntime(requested: RuntimeConfig | undefined): RuntimeConfig {
  const out = { ...DEFAULT_RUNTIME };
  for (const key of Object.keys(RUNTIME_LIMITS) as Array<keyof RuntimeConfig>) {
    const value = requested?.[key] ?? 0;
    if (value > RUNTIME_LIMITS[key]) {
      throw new InvalidArgumentError(`runtime.${RUNTIME_FIELDS[key]} ${value} is too large: expected at most ${RUNTIME_LIMITS[key]}`);
    }
    if (value > 0) out[key] = value;
  }
  return out;
}

/** Lower-case hex sha256, or '' when not given. */
export function validateSha256(sha256: string, field = 'sha256'): string {
  if (sha256 === '') return '';
  if (!/^[0-9a-fA-F]{64}$/.test(sha256)) {
    throw new InvalidArgumentError(`${field} ${JSON.stringify(sha256.slice(0, 80))} is invalid: expected 64 hex characters`);
  }
  return sha256.toLowerCase();
}
