import { InvalidArgumentError } from './errors';

/** Model names: lower-case, start with a letter or digit, at most 63 characters. */
export const MODEL_NAME_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** Alias names follow the model name rule, but may not be all digits (that reads as a version). */
export const ALIAS_PATTERN = /^[a-z0-9][a-z0-9._-]{0,62}$/;
/** The alias a reference without version or alias resolves through. */
export const DEFAULT_ALIAS = 'production';

const NAME_RULE = 'expected 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit';

/** Throws INVALID_ARGUMENT unless `name` is a valid model name. */
export function validateModelName(name: string, field = 'model name'): string {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidArgumentError(`${field} is empty: ${NAME_RULE}`);
  if (!MODEL_NAME_PATTERN.test(name) || name === '.' || name === '..') {
    throw new InvalidArgumentError(`${field} ${JSON.stringify(name)} is invalid: ${NAME_RULE}`);
  }
  return name;
}

/** Throws INVALID_ARGUMENT unless `alias` is a valid alias name. */
export function validateAlias(alias: string, field = 'alias'): string {
  if (typeof alias !== 'string' || alias.length === 0) throw new InvalidArgumentError(`${field} is empty: ${NAME_RULE}`);
  if (!ALIAS_PATTERN.test(alias) || /^[0-9]+$/.test(alias)) {
    throw new InvalidArgumentError(
      `${field} ${JSON.stringify(alias)} is invalid: ${NAME_RULE}, and not only digits`,
    );
  }
  return alias;
}

/** A parsed `model`, `model:version` or `model@alias`. */
export interface ModelRef {
  model: string;
  /** Explicit version, 0 when not given. */
  version: number;
  /** Alias, empty when not given. */
  alias: string;
}

/** Parses and validates `model`, `model:version` or `model@alias`. */
export function parseModelRef(reference: string): ModelRef {
  if (typeof reference !== 'string' || reference.length === 0) {
    throw new InvalidArgumentError('model reference is empty: expected "model", "model:version" or "model@alias"');
  }
  const at = reference.indexOf('@');
  const colon = reference.indexOf(':');
  if (at >= 0 && colon >= 0) {
    throw new InvalidArgumentError(
      `model reference ${JSON.stringify(reference)} names both a version and an alias: expected "model:version" or "model@alias"`,
    );
  }
  if (colon >= 0) {
    const model = validateModelName(reference.slice(0, colon));
    const versionText = reference.slice(colon + 1);
    const version = Number(versionText);
    if (!/^[0-9]+$/.test(versionText) || !Number.isSafeInteger(version) || version < 1 || version > 0xffffffff) {
      throw new InvalidArgumentError(
        `model reference ${JSON.stringify(reference)} has version ${JSON.stringify(versionText)}: expected a positive integer`,
      );
    }
    return { model, version, alias: '' };
  }
  if (at >= 0) {
    return { model: validateModelName(reference.slice(0, at)), version: 0, alias: validateAlias(reference.slice(at + 1)) };
  }
  return { model: validateModelName(reference), version: 0, alias: '' };
}

/** Formats a reference back to its string form. */
export function formatModelRef(ref: ModelRef): string {
  if (ref.version > 0) return `${ref.model}:${ref.version}`;
  if (ref.alias) return `${ref.model}@${ref.alias}`;
  return ref.model;
}
