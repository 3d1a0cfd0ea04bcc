import { EventEmitter } from 'node:events';
import type { ModelVersion } from '@maas/proto';
import { ResourceExhaustedError } from '@maas/rpc';
import type { Logger } from 'pino';
import type { ArtifactCache } from './artifact-cache';
import type { BatchEvent } from './dynamic-batcher';
import { LoadedModel, type SessionSettings } from './loaded-model';

/** Looks versions up in the registry. */
export interface VersionSource {
  getVersion(model: string, version: number): Promise<ModelVersion>;
  resolve(reference: string): Promise<ModelVersion>;
}

/** Options of {@link ModelManager}. */
export interface ModelManagerOptions extends SessionSettings {
  /** Bytes the loaded versions may hold together (estimated). */
  memoryBudgetBytes: number;
  logger?: Logger;
}

/** Events: `batch` ({@link BatchEvent} & {model, version}), `loaded`, `unloaded` (ModelVersion). */
export type ManagerEvents = EventEmitter;

const keyOf = (model: string, version: number) => `${model}:${version}`;

/**
 * The versions loaded on this node. Loads on first use (one download and one
 * session however many requests arrive at once), keeps the total under the
 * memory budget by unloading the least recently used idle versions, and never
 * unloads a version with work in flight to make room.
 */
export class ModelManager {
  readonly events: ManagerEvents = new EventEmitter().setMaxListeners(0);
  private readonly loaded = new Map<string, LoadedModel>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();

  constructor(
    private readonly versions: VersionSource,
    private readonly artifacts: ArtifactCache,
    private readonly options: ModelManagerOptions,
  ) {}

  get memoryBudgetBytes(): number {
    return this.options.memoryBudgetBytes;
  }

  get memoryUsedBytes(): number {
    let total = 0;
    for (const m of this.loaded.values()) total += m.memoryBytes;
    return total;
  }

  list(): LoadedModel[] {
    return [...this.loaded.values()];
  }

  find(model: string, version: number): LoadedModel | undefined {
    return this.loaded.get(keyOf(model, version));
  }

  /** The loaded version, loading it first if needed. */
  get(model: string, version: number): Promise<LoadedModel> {
    const key = keyOf(model, version);
    const ready = this.loaded.get(key);
    if (ready) return Promise.resolve(ready);
    let pending = this.loading.get(key);
    if (!pending) {
      pending = this.load(model, version).finally(() => this.loading.delete(key));
      this.loading.set(key, pending);
    }
    return pending;
  }

  /** Unloads a version after its in-flight work drains; false when it was not loaded. */
  async unload(model: string, version: number): Promise<boolean> {
    const key = keyOf(model, version);
    const found = this.loaded.get(key);
    if (!found) return false;
    this.loaded.delete(key);
    await found.unload();
    this.options.logger?.info({ model, version }, 'unloaded model version');
    this.events.emit('unloaded', found.version);
    return true;
  }

  /** Unloads everything (after draining). */
  async shutdown(): Promise<void> {
    await Promise.allSettled([...this.loading.values()]);
    await Promise.all(this.list().map((m) => this.unload(m.version.model, m.version.version)));
  }

  private async load(model: string, number: number): Promise<LoadedModel> {
    const version = await this.versions.getVersion(model, number);
    const need = version.sizeBytes * 2;
    if (need > this.options.memoryBudgetBytes) {
      throw new ResourceExhaustedError(
        `${model}:${number} needs about ${need} bytes, more than this node's whole memory budget of ${this.options.memoryBudgetBytes} bytes`,
      );
    }
    await this.makeRoom(need);
    const path = await this.artifacts.path(version.sha256, version.sizeBytes);
    await this.makeRoom(need);
    const loaded = await LoadedModel.load(version, path, this.options, (event: BatchEvent) =>
      this.events.emit('batch', { ...event, model, version: number }),
    );
    this.loaded.set(keyOf(model, number), loaded);
    this.options.logger?.info({ model, version: number, sha256: version.sha256, memoryBytes: loaded.memoryBytes, runsOn: loaded.runsOn }, 'loaded model version');
    this.events.emit('loaded', version);
    return loaded;
  }

  /** Unloads idle versions, least recently used first, until `need` more bytes fit. */
  private async makeRoom(need: number): Promise<void> {
    const budget = this.options.memoryBudgetBytes;
    if (this.memoryUsedBytes + need <= budget) return;
    const idle = this.list()
      .filter((m) => m.inFlight === 0)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const victim of idle) {
      if (this.memoryUsedBytes + need <= budget) return;
      this.options.logger?.info({ model: victim.version.model, version: victim.version.version }, 'unloading least recently used version for memory');
      await this.unload(victim.version.model, victim.version.version);
    }
    if (this.memoryUsedBytes + need > budget) {
      throw new ResourceExhaustedError(
        `memory budget of ${budget} bytes is held by versions with work in flight (${this.memoryUsedBytes} used, ${need} more needed); retry shortly`,
      );
    }
  }
}
