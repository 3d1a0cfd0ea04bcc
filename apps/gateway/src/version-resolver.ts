import { cacheFields, protoCodec, readThrough, type MetadataCache } from '@maas/cache';
import { ModelVersion, VersionState } from '@maas/proto';
import { FailedPreconditionError, formatModelRef, type CallOpts, type ModelRef } from '@maas/rpc';
import type { RegistryClient } from '@maas/registry-client';

const versionCodec = protoCodec(ModelVersion);

/**
 * Resolves `model[:version|@alias]` to a version through the metadata cache
 * the registry keeps (and invalidates on every write), asking the registry
 * on a miss. Without a shared cache every resolution asks the registry, which
 * is slower but never stale.
 */
export class VersionResolver {
  constructor(
    private readonly registry: () => RegistryClient,
    private readonly cache?: MetadataCache,
  ) {}

  async resolve(ref: ModelRef, opts: CallOpts = {}): Promise<ModelVersion> {
    const load = () => this.registry().resolve(formatModelRef(ref), opts);
    if (!this.cache) return load();
    const field = ref.version > 0 ? cacheFields.version(ref.version) : ref.alias ? cacheFields.alias(ref.alias) : cacheFields.defaultVersion();
    const version = await readThrough(this.cache, ref.model, field, versionCodec, load);
    // The registry caches versions under the same field for GetVersion, archived ones included.
    if (version.state === VersionState.VERSION_STATE_ARCHIVED) {
      throw new FailedPreconditionError(`version ${version.version} of "${ref.model}" is archived: pick a READY version or alias`);
    }
    return version;
  }
}
