/**
 * Typed configuration: each app declares a schema of fields, each read from
 * one environment variable with a default, and {@link loadConfig} merges
 * explicit values > environment > defaults and validates them at start.
 */

/** One configuration field. */
export interface ConfigField<T> {
  /** Environment variable the field is read from. */
  env: string;
  /** Value when neither an explicit value nor the variable is set. */
  default: T;
  /** Parses the variable's text; throws an Error whose message says what was expected. */
  parse: (raw: string) => T;
  /** One line for `--help` and the README's configuration table. */
  doc: string;
}

export type ConfigSchema = Record<string, ConfigField<unknown>>;
export type ConfigOf<S extends ConfigSchema> = { [K in keyof S]: S[K] extends ConfigField<infer T> ? T : never };

/** A configuration value was present but invalid. Names the variable. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Builds the configuration of a schema. Explicit values win over the
 * environment, which wins over defaults. Empty variables count as unset.
 */
export function loadConfig<S extends ConfigSchema>(
  schema: S,
  env: Record<string, string | undefined>,
  explicit: Partial<ConfigOf<S>> = {},
): ConfigOf<S> {
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(schema)) {
    if (explicit[key as keyof S] !== undefined) {
      out[key] = explicit[key as keyof S];
      continue;
    }
    const raw = env[field.env];
    if (raw === undefined || raw.trim() === '') {
      out[key] = field.default;
      continue;
    }
    try {
      out[key] = field.parse(raw.trim());
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new ConfigError(field.env, `${field.env}=${JSON.stringify(raw)} is invalid: ${why}`);
    }
  }
  return out as ConfigOf<S>;
}

/** Rows `variable | default | meaning` for help texts and documentation. */
export function describeConfig(schema: ConfigSchema): Array<{ env: string; default: string; doc: string }> {
  return Object.values(schema).map((field) => ({
    env: field.env,
    default: field.default === '' || field.default === undefined ? '(unset)' : JSON.stringify(field.default),
    doc: field.doc,
  }));
}
