import type { MetadataCache } from './metadata-cache';

/** Turns values into cache strings and back. */
export interface CacheCodec<T> {
  encode(value: T): string;
  decode(text: string): T;
}

/** A generated protobuf message type (ts-proto `MessageFns`). */
interface MessageType<T> {
  encode(message: T): { finish(): Uint8Array };
  decode(input: Uint8Array): T;
}

/** Caches protobuf messages as base64 of their wire encoding. */
export function protoCodec<T>(type: MessageType<T>): CacheCodec<T> {
  return {
    encode: (value) => Buffer.from(type.encode(value).finish()).toString('base64'),
    decode: (text) => type.decode(Buffer.from(text, 'base64')),
  };
}

/**
 * Names of the entries cached per model. The registry fills them and the
 * gateway reads them, so both must agree.
 */
export const cacheFields = {
  /** The `Model` record. */
  model: () => 'model',
  /** One `ModelVersion`. */
  version: (version: number) => `v:${version}`,
  /** The `ModelVersion` an alias points at. */
  alias: (alias: string) => `a:${alias}`,
  /** The `ModelVersion` a bare model name resolves to (alias `production`, else latest READY). */
  defaultVersion: () => 'default',
};

/**
 * Reads `field` of `model` from the cache, or loads it, stores it (unless a
 * write happened meanwhile) and returns it. Loader errors pass through and are
 * not cached.
 */
export async function readThrough<T>(
  cache: MetadataCache,
  model: string,
  field: string,
  codec: CacheCodec<T>,
  load: () => Promise<T>,
): Promise<T> {
  const read = await cache.get(model, field);
  if (read.value !== undefined) {
    try {
      return codec.decode(read.value);
    } catch {
      // An entry this build cannot decode is a miss.
    }
  }
  const value = await load();
  await cache.set(model, field, codec.encode(value), read.generation);
  return value;
}
