import { cacheFields, NearMetadataCache, protoCodec, readThrough, type CacheCodec, type MetadataCache } from '@maas/cache';
import { ModelVersion, VersionState } from '@maas/proto';
import { FailedPreconditionError, formatModelRef, type CallOpts, type ModelRef } from '@maas/rpc';
import type { RegistryClient } from '@maas/registry-client';

const wireCodec = protoCodec(ModelVersion);

/**
 * Decodes each distinct cached text once: hot resolutions come back as the
 * same string from the in-memory cache layer, so they skip base64 and
 * protobuf decoding. Decoded versions are shared and never mutated.
 */
function memoizedCodec(limit = 1024): CacheCodec<ModelVersion> {
  const decoded = new Map<string, ModelVersion>();
  return {
    encode: wireCodec.encode,
    decode(text) {
      let value = decoded.get(text);
      if (!value) {
        value = wireCodec.decode(text);
        if (decoded.size >= limit) decoded.clear();
        decoded.set(text, value);
      }
      return value;
    },
  };
}

/** The cache field a reference is kept under. */
const fieldOf = (ref: ModelRef): string => (ref.version > 0 ? cacheFields.version(ref.version) : ref.alias ? cacheFields.alias(ref.alias) : cacheFields.defaultVersion());

/**
 * Resolves `model[:version|@alias]` to a version through the metadata cache
 * the registry keeps (and invalidates on every write), asking the registry
 * on a miss. Without a shared cache every resolution asks the registry, which
 * is slower but never stale.
 */
export class VersionResolver {
  private readonly codec = memoizedCodec();

  constructor(
    private readonly registry: () => RegistryClient,
    private readonly cache?: MetadataCache,
  ) {}

  /**
   * The version this process holds in memory for `ref`, to route on before
   * it is confirmed: `current` settles true once a generation read sent after
   * this call finds it still current, false when it is not (then resolve
   * again). Undefined when memory holds nothing usable for `ref`.
   */
  peek(ref: ModelRef): { version: ModelVersion; current: Promise<boolean> } | undefined {
    if (!(this.cache instanceof NearMetadataCache)) return undefined;
    const held = this.cache.peek(ref.model, fieldOf(ref));
    if (!held) return undefined;
    let version: ModelVersion;
    try {
      version = this.codec.decode(held.value);
    } catch {
      return undefined;
    }
    if (version.state === VersionState.VERSION_STATE_ARCHIVED) return undefined;
    return { version, current: held.current };
  }

  /**
   * @param fresh ask the registry itself, past every cache (after a node said
   * the version we named is another artifact now), and drop this process's copy.
   */
  async resolve(ref: ModelRef, opts: CallOpts = {}, fresh = false): Promise<ModelVersion> {
    const load = () => this.registry().resolve(formatModelRef(ref), opts);
    if (fresh && this.cache instanceof NearMetadataCache) this.cache.forget(ref.model);
    if (!this.cache || fresh) return load();
    const version = await readThrough(this.cache, ref.model, fieldOf(ref), this.codec, load);
    // The registry caches versions under the same field for GetVersion, archived ones included.
    if (version.state === VersionState.VERSION_STATE_ARCHIVED) {
      throw new FailedPreconditionError(`version ${version.version} of "${ref.model}" is archived: pick a READY version or alias`);
    }
    return version;
  }
}
