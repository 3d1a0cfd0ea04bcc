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
   * @param fresh ask the registry itself, past every cache (after a node said
   * the version we named is another artifact now), and drop this process's copy.
   */
  async resolve(ref: ModelRef, opts: CallOpts = {}, fresh = false): Promise<ModelVersion> {
    const load = () => this.registry().resolve(formatModelRef(ref), opts);
    if (fresh && this.cache instanceof NearMetadataCache) this.cache.forget(ref.model);
    if (!this.cache || fresh) return load();
    const field = ref.version > 0 ? cacheFields.version(ref.version) : ref.alias ? cacheFields.alias(ref.alias) : cacheFields.defaultVersion();
    const version = await readThrough(this.cache, ref.model, field, this.codec, load);
    // The registry caches versions under the same field for GetVersion, archived ones included.
    if (version.state === VersionState.VERSION_STATE_ARCHIVED) {
      throw new FailedPreconditionError(`version ${version.version} of "${ref.model}" is archived: pick a READY version or alias`);
    }
    return version;
  }
}
