import type { Readable } from 'node:stream';
import type { ModelVersion } from '@maas/proto';

/** What the registry keeps about a model, apart from its versions. */
export interface ModelRecord {
  name: string;
  description: string;
  tags: string[];
  createTime: Date;
  updateTime: Date;
  /** Alias → version number. */
  aliases: Record<string, number>;
}

/** An artifact streamed to staging, not yet a version. */
export interface StagedArtifact {
  /** Where the bytes are being written. */
  path: string;
  /** Removes the staged bytes; safe to call twice or after commit. */
  discard(): Promise<void>;
}

/**
 * Durable storage of models, versions and artifacts. Every write is atomic:
 * after a crash at any point a reader sees either the old or the new state,
 * never part of a version.
 */
export interface ModelStore {
  listModels(): Promise<ModelRecord[]>;
  getModel(name: string): Promise<ModelRecord | undefined>;
  /** Creates or replaces the model record. */
  putModel(record: ModelRecord): Promise<void>;
  /** Removes the model with all versions and artifacts. */
  deleteModel(name: string): Promise<void>;
  /** Every version of the model, ascending. */
  listVersions(model: string): Promise<ModelVersion[]>;
  getVersion(model: string, version: number): Promise<ModelVersion | undefined>;
  /** Replaces a version's manifest (archive); the artifact never changes. */
  putVersion(version: ModelVersion): Promise<void>;
  /** A new staging location for an upload. */
  stage(): Promise<StagedArtifact>;
  /** Bytes an upload may still write to the store (free space to an unprivileged writer). */
  freeBytes(): Promise<number>;
  /**
   * Makes a staged artifact the next version of `model`: `build` receives the
   * allocated number and returns the manifest. The version appears whole or not at all.
   */
  commitVersion(model: string, staged: StagedArtifact, build: (version: number) => ModelVersion): Promise<ModelVersion>;
  /** A stream of the version's artifact bytes in chunks of `chunkSize`. */
  readArtifact(model: string, version: number, chunkSize: number): Readable;
  shutdown(): Promise<void>;
}
