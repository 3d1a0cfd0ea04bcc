import type { Readable } from 'node:stream';
import { cacheFields, newWriteId, protoCodec, readThrough, type ChangeBus, type LeaseWaiter, type MetadataCache } from '@maas/cache';
import { readOnnxSignature, verifyWithOnnxruntime } from '@maas/onnx';
import { Model, ModelChangeEvent_Kind, ModelVersion, VersionState, type UploadMetadata } from '@maas/proto';
import {
  AlreadyExistsError,
  DEFAULT_ALIAS,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  ResourceExhaustedError,
  validateAlias,
  validateModelName,
  type ModelRef,
} from '@maas/rpc';
import type { Logger } from 'pino';
import { writeStagedArtifact } from './artifact-upload';
import type { ModelRecord, ModelStore } from './model-store';
import { decodePageToken, encodePageToken, pageSizeOf } from './page-token';
import { resolveRuntime, validateAliases, validateDescription, validateSha256, validateTags } from './validation';

/** Options of {@link Registry}. */
export interface RegistryOptions {
  /** Largest artifact accepted, in bytes. @default 2 GiB */
  maxUploadBytes?: number;
  /** Artifacts up to this size are also loaded once by onnxruntime at upload (costs about their size in memory). @default 256 MiB */
  verifyWithOnnxruntimeMaxBytes?: number;
  /**
   * Near caches that hold leases on their memory (gateways): each write is
   * acknowledged only once every holder has dropped what it changed or lost
   * its lease. Without it, events carry no write id and nothing is awaited.
   */
  leases?: LeaseWaiter;
  logger?: Logger;
}

const modelCodec = protoCodec(Model);
const versionCodec = protoCodec(ModelVersion);

/**
 * The model registry's rules, independent of gRPC: models, immutable numbered
 * versions, aliases and resolution, with a read-through cache invalidated and
 * a change event published on every write.
 */
/** Room kept free beside an artifact for its manifest and the model record. */
const STORAGE_HEADROOM_BYTES = 64 * 1024;

/** A write that ran out of space (mid-stream, at fsync or at commit) is the storage's limit, not an internal error. */
function storageFull(err: unknown): never {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    throw new ResourceExhaustedError('registry storage is full: the upload did not fit and nothing was stored; free space or delete unused versions, then retry', { cause: err });
  }
  throw err;
}

export class Registry {
  private readonly maxUploadBytes: number;
  private readonly verifyMaxBytes: number;
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly leases?: LeaseWaiter;
  /** Artifact bytes stored by successful uploads since start. */
  uploadedBytes = 0;

  constructor(
    private readonly store: ModelStore,
    private readonly cache: MetadataCache,
    private readonly bus: ChangeBus,
    options: RegistryOptions = {},
  ) {
    this.maxUploadBytes = options.maxUploadBytes ?? 2 * 1024 ** 3;
    this.verifyMaxBytes = options.verifyWithOnnxruntimeMaxBytes ?? 256 * 1024 ** 2;
    this.leases = options.leases;
  }

  async createModel(name: string, description: string, tags: string[]): Promise<Model> {
    validateModelName(name);
    const record: ModelRecord = {
      name,
      description: validateDescription(description),
      tags: validateTags(tags),
      createTime: new Date(),
      updateTime: new Date(),
      aliases: {},
    };
    return this.write(name, ModelChangeEvent_Kind.KIND_MODEL_CREATED, 0, '', async () => {
      if (await this.store.getModel(name)) throw new AlreadyExistsError(`model "${name}" already exists`);
      await this.store.putModel(record);
      return this.toModel(record);
    });
  }

  async getModel(name: string): Promise<Model> {
    validateModelName(name);
    return readThrough(this.cache, name, cacheFields.model(), modelCodec, async () => this.toModel(await this.requireModel(name)));
  }

  async listModels(pageSize: number, pageToken: string, tag: string): Promise<{ models: Model[]; nextPageToken: string }> {
    const size = pageSizeOf(pageSize);
    if (tag) validateTags([tag]);
    const scope = `models?tag=${tag}`;
    const after = decodePageToken(pageToken, scope);
    const all = (await this.store.listModels()).filter((m) => m.name > after && (!tag || m.tags.includes(tag)));
    const page = all.slice(0, size);
    const models = await Promise.all(page.map((record) => this.toModel(record)));
    const more = all.length > size;
    return { models, nextPageToken: more ? encodePageToken({ scope, after: page[page.length - 1].name }) : '' };
  }

  async updateModel(name: string, description: string | undefined, tags: string[], replaceTags: boolean): Promise<Model> {
    validateModelName(name);
    const newTags = validateTags(tags);
    if (description !== undefined) validateDescription(description);
    return this.write(name, ModelChangeEvent_Kind.KIND_MODEL_UPDATED, 0, '', async () => {
      const record = await this.requireModel(name);
      if (description !== undefined) record.description = description;
      record.tags = replaceTags ? newTags : validateTags([...record.tags, ...newTags]);
      record.updateTime = new Date();
      await this.store.putModel(record);
      return this.toModel(record);
    });
  }

  async deleteModel(name: string): Promise<void> {
    validateModelName(name);
    await this.write(name, ModelChangeEvent_Kind.KIND_MODEL_DELETED, 0, '', async () => {
      await this.requireModel(name);
      await this.store.deleteModel(name);
    });
  }

  /**
   * Stores a new version from a stream of chunks. Nothing becomes visible
   * unless every check passes; on any failure the staged bytes are removed.
   */
  async upload(meta: UploadMetadata, chunks: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<ModelVersion> {
    const name = validateModelName(meta.model);
    const declaredSha = validateSha256(meta.sha256);
    const aliases = validateAliases(meta.aliases);
    const runtime = resolveRuntime(meta.runtime);
    const description = validateDescription(meta.description);
    if (meta.sizeBytes > this.maxUploadBytes) {
      throw new InvalidArgumentError(`size_bytes ${meta.sizeBytes} exceeds the upload limit of ${this.maxUploadBytes} bytes`);
    }
    await this.requireModel(name);
    // A declared size that cannot fit is refused before a byte is streamed (the manifest needs a little more).
    const free = await this.store.freeBytes();
    if (meta.sizeBytes > 0 && meta.sizeBytes + STORAGE_HEADROOM_BYTES > free) {
      throw new ResourceExhaustedError(`registry storage is full: the upload declares ${meta.sizeBytes} bytes and ${free} bytes are free; nothing was stored`);
    }
    const staged = await this.store.stage().catch(storageFull);
    try {
      const written = await writeStagedArtifact(staged, chunks, { maxBytes: this.maxUploadBytes, signal });
      if (written.sizeBytes === 0) throw new InvalidArgumentError('upload had no artifact bytes: send one or more chunk messages after the metadata');
      if (meta.sizeBytes > 0 && meta.sizeBytes !== written.sizeBytes) {
        throw new InvalidArgumentError(`received ${written.sizeBytes} bytes but metadata declared size_bytes ${meta.sizeBytes}`);
      }
      if (declaredSha && declaredSha !== written.sha256) {
        throw new InvalidArgumentError(`sha256 mismatch: metadata declared ${declaredSha}, received bytes hash to ${written.sha256}`);
      }
      const signature = await readOnnxSignature(staged.path);
      if (written.sizeBytes <= this.verifyMaxBytes) await verifyWithOnnxruntime(staged.path);
      const version = await this.write(name, ModelChangeEvent_Kind.KIND_VERSION_CREATED, 0, '', async () => {
        await this.requireModel(name);
        const committed = await this.store.commitVersion(name, staged, (number) => ({
          model: name,
          version: number,
          sha256: written.sha256,
          sizeBytes: written.sizeBytes,
          inputs: signature.inputs,
          outputs: signature.outputs,
          runtime,
          createTime: new Date(),
          state: VersionState.VERSION_STATE_READY,
          description,
          aliases: [],
        }));
        if (aliases.length > 0) {
          const record = await this.requireModel(name);
          for (const alias of aliases) record.aliases[alias] = committed.version;
          record.updateTime = new Date();
          await this.store.putModel(record);
        }
        return committed;
      });
      this.uploadedBytes += written.sizeBytes;
      for (const alias of aliases) {
        // Told to nodes and logs; the caches were settled by the write itself.
        await this.bus.publish({ kind: ModelChangeEvent_Kind.KIND_ALIAS_SET, model: name, version: version.version, alias, time: new Date(), writeId: '' });
      }
      return { ...version, aliases };
    } catch (err) {
      return storageFull(err);
    } finally {
      await staged.discard();
    }
  }

  async getVersion(model: string, version: number): Promise<ModelVersion> {
    validateModelName(model);
    if (!Number.isInteger(version) || version < 1) throw new InvalidArgumentError(`version ${version} is invalid: expected a positive integer`);
    return readThrough(this.cache, model, cacheFields.version(version), versionCodec, () => this.loadVersion(model, version));
  }

  async listVersions(model: string, pageSize: number, pageToken: string, includeArchived: boolean) {
    validateModelName(model);
    const size = pageSizeOf(pageSize);
    const scope = `versions/${model}?archived=${includeArchived}`;
    const after = Number(decodePageToken(pageToken, scope) || 0);
    const record = await this.requireModel(model);
    const all = (await this.store.listVersions(model)).filter(
      (v) => v.version > after && (includeArchived || v.state !== VersionState.VERSION_STATE_ARCHIVED),
    );
    const page = all.slice(0, size).map((v) => this.withAliases(v, record));
    const more = all.length > size;
    return { versions: page, nextPageToken: more ? encodePageToken({ scope, after: String(page[page.length - 1].version) }) : '' };
  }

  async archiveVersion(model: string, version: number): Promise<ModelVersion> {
    await this.getVersion(model, version);
    return this.write(model, ModelChangeEvent_Kind.KIND_VERSION_ARCHIVED, version, '', async () => {
      const record = await this.requireModel(model);
      const pointing = Object.entries(record.aliases).filter(([, v]) => v === version).map(([a]) => a);
      if (pointing.length > 0) {
        throw new FailedPreconditionError(`version ${version} of "${model}" is the target of alias(es) ${pointing.join(', ')}: move or delete them first`);
      }
      const current = await this.loadVersion(model, version);
      const archived = { ...current, state: VersionState.VERSION_STATE_ARCHIVED };
      await this.store.putVersion(archived);
      return this.withAliases(archived, record);
    });
  }

  async setAlias(model: string, alias: string, version: number): Promise<Model> {
    validateModelName(model);
    validateAlias(alias);
    if (!Number.isInteger(version) || version < 1) throw new InvalidArgumentError(`version ${version} is invalid: expected a positive integer`);
    return this.write(model, ModelChangeEvent_Kind.KIND_ALIAS_SET, version, alias, async () => {
      const record = await this.requireModel(model);
      const target = await this.store.getVersion(model, version);
      if (!target) throw new FailedPreconditionError(`alias "${alias}" cannot point to version ${version} of "${model}": no such version`);
      if (target.state === VersionState.VERSION_STATE_ARCHIVED) {
        throw new FailedPreconditionError(`alias "${alias}" cannot point to version ${version} of "${model}": it is archived`);
      }
      record.aliases[alias] = version;
      record.updateTime = new Date();
      await this.store.putModel(record);
      return this.toModel(record);
    });
  }

  async deleteAlias(model: string, alias: string): Promise<Model> {
    validateModelName(model);
    validateAlias(alias);
    return this.write(model, ModelChangeEvent_Kind.KIND_ALIAS_DELETED, 0, alias, async () => {
      const record = await this.requireModel(model);
      if (!(alias in record.aliases)) throw new NotFoundError(`model "${model}" has no alias "${alias}"`);
      delete record.aliases[alias];
      record.updateTime = new Date();
      await this.store.putModel(record);
      return this.toModel(record);
    });
  }

  /**
   * The version a reference names: an explicit version, else an alias, else
   * alias `production`, else the latest READY version.
   */
  async resolve(ref: ModelRef): Promise<ModelVersion> {
    validateModelName(ref.model);
    const field = ref.version > 0 ? cacheFields.version(ref.version) : ref.alias ? cacheFields.alias(ref.alias) : cacheFields.defaultVersion();
    const version = await readThrough(this.cache, ref.model, field, versionCodec, () => this.resolveUncached(ref));
    if (version.state === VersionState.VERSION_STATE_ARCHIVED) {
      throw new FailedPreconditionError(`version ${version.version} of "${ref.model}" is archived: pick a READY version or alias`);
    }
    return version;
  }

  /** Finds a version by artifact hash (nodes pull by sha256). */
  async findBySha256(sha256: string): Promise<ModelVersion> {
    const wanted = validateSha256(sha256);
    for (const record of await this.store.listModels()) {
      const found = (await this.store.listVersions(record.name)).find((v) => v.sha256 === wanted);
      if (found) return this.withAliases(found, record);
    }
    throw new NotFoundError(`no version has an artifact with sha256 ${wanted}`);
  }

  readArtifact(version: ModelVersion, chunkSize: number): Readable {
    return this.store.readArtifact(version.model, version.version, chunkSize);
  }

  private async resolveUncached(ref: ModelRef): Promise<ModelVersion> {
    const record = await this.requireModel(ref.model);
    if (ref.version > 0) return this.withAliases(await this.loadVersion(ref.model, ref.version, record), record);
    const alias = ref.alias || (DEFAULT_ALIAS in record.aliases ? DEFAULT_ALIAS : '');
    if (alias) {
      const target = record.aliases[alias];
      if (target === undefined) {
        const known = Object.keys(record.aliases);
        throw new NotFoundError(`model "${ref.model}" has no alias "${alias}" (aliases: ${known.length ? known.join(', ') : 'none'})`);
      }
      return this.withAliases(await this.loadVersion(ref.model, target, record), record);
    }
    const ready = (await this.store.listVersions(ref.model)).filter((v) => v.state === VersionState.VERSION_STATE_READY);
    const latest = ready.at(-1);
    if (!latest) throw new NotFoundError(`model "${ref.model}" has no READY version: upload one first`);
    return this.withAliases(latest, record);
  }

  private async loadVersion(model: string, version: number, known?: ModelRecord): Promise<ModelVersion> {
    const record = known ?? (await this.requireModel(model));
    const found = await this.store.getVersion(model, version);
    if (!found) throw new NotFoundError(`model "${model}" has no version ${version}`);
    return this.withAliases(found, record);
  }

  private async requireModel(name: string): Promise<ModelRecord> {
    const record = await this.store.getModel(name);
    if (!record) throw new NotFoundError(`model "${name}" does not exist`);
    return record;
  }

  private async toModel(record: ModelRecord): Promise<Model> {
    const versions = await this.store.listVersions(record.name);
    return {
      name: record.name,
      description: record.description,
      tags: record.tags,
      createTime: record.createTime,
      updateTime: record.updateTime,
      aliases: { ...record.aliases },
      latestVersion: versions.at(-1)?.version ?? 0,
    };
  }

  private withAliases(version: ModelVersion, record: ModelRecord): ModelVersion {
    const aliases = Object.entries(record.aliases).filter(([, v]) => v === version.version).map(([a]) => a).sort();
    return { ...version, aliases };
  }

  /**
   * Runs a write under the model's lock, then invalidates its cache entries,
   * publishes the change and, with leases, waits until every lease holder has
   * dropped what it changed: only then is the write acknowledged.
   */
  private async write<T>(model: string, kind: ModelChangeEvent_Kind, version: number, alias: string, action: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(model) ?? Promise.resolve();
    const run = previous.catch(() => undefined).then(action);
    this.locks.set(model, run);
    try {
      const result = await run;
      await this.cache.invalidate(model);
      const changed = version || (result as { version?: number } | undefined)?.version || 0;
      const writeId = this.leases ? newWriteId() : '';
      await this.bus.publish({ kind, model, version: changed, alias, time: new Date(), writeId });
      await this.leases?.settle(writeId);
      return result;
    } finally {
      if (this.locks.get(model) === run) this.locks.delete(model);
    }
  }
}
