import { EventEmitter } from 'node:events';
import { VersionState, type ModelVersion } from '@maas/proto';
import { status } from '@grpc/grpc-js';
import { AbortedError, FailedPreconditionError, ResourceExhaustedError, statusOf } from '@maas/rpc';
import type { Logger } from 'pino';
import type { ArtifactCache } from './artifact-cache';
import type { BatchEvent } from './dynamic-batcher';
import { LoadedModel, type SessionSettings } from './loaded-model';
import { predictCost, RssMeter } from './version-cost';

/** Looks versions up in the registry. */
export interface VersionSource {
  getVersion(model: string, version: number): Promise<ModelVersion>;
  resolve(reference: string): Promise<ModelVersion>;
}

/** Options of {@link ModelManager}. */
export interface ModelManagerOptions extends SessionSettings {
  /** Resident bytes the loaded versions may hold together (measured, see version-cost.ts). */
  memoryBudgetBytes: number;
  logger?: Logger;
  /** Reads the process's resident memory. @default a {@link RssMeter} over process.memoryUsage.rss */
  meter?: RssMeter;
}

/** Events: `batch` ({@link BatchEvent} & {model, version}), `loaded`, `unloaded` (ModelVersion). */
export type ManagerEvents = EventEmitter;

const keyOf = (model: string, version: number) => `${model}:${version}`;
const short = (sha: string) => sha.slice(0, 12);

/**
 * The versions loaded on this node. A loaded version is known by its
 * artifact: a request is answered only from a session of the artifact the
 * registry holds for `model:version` now (the gateway names it in the request;
 * without it the registry is asked). Loads on first use (one download and one
 * session however many requests arrive at once), keeps the measured total
 * under the memory budget by unloading the least recently used idle versions,
 * and never unloads a version with work in flight to make room.
 */
export class ModelManager {
  readonly events: ManagerEvents = new EventEmitter().setMaxListeners(0);
  private readonly loaded = new Map<string, LoadedModel>();
  private readonly loading = new Map<string, Promise<LoadedModel>>();
  private readonly meter: RssMeter;

  constructor(
    private readonly versions: VersionSource,
    private readonly artifacts: ArtifactCache,
    private readonly options: ModelManagerOptions,
  ) {
    this.meter = options.meter ?? new RssMeter();
  }

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

  /**
   * The loaded version, loading it first if needed. With `sha256` (what the
   * caller resolved) a loaded session of that artifact answers at once;
   * without it, or when the loaded one is of another artifact, the registry
   * says which artifact `model:version` is now, and a session of any other is
   * unloaded. A caller naming an artifact the registry no longer holds gets
   * ABORTED: it must resolve again.
   */
  async get(model: string, version: number, sha256 = ''): Promise<LoadedModel> {
    const ready = this.loaded.get(keyOf(model, version));
    if (ready && sha256 && ready.sha256 === sha256) return ready;
    const current = await this.versions.getVersion(model, version);
    if (sha256 && current.sha256 !== sha256) {
      throw new AbortedError(
        `${model}:${version} is artifact ${short(current.sha256)}… in the registry now, not ${short(sha256)}… as the request says: the model was replaced; resolve it again`,
      );
    }
    if (current.state === VersionState.VERSION_STATE_ARCHIVED) {
      throw new FailedPreconditionError(`version ${version} of "${model}" is archived: pick a READY version or alias`);
    }
    return this.getCurrent(current);
  }

  /** The session of exactly this version's artifact, replacing one of another artifact under the same name. */
  private async getCurrent(current: ModelVersion): Promise<LoadedModel> {
    const { model, version, sha256 } = current;
    const ready = this.loaded.get(keyOf(model, version));
    if (ready?.sha256 === sha256) return ready;
    if (ready) {
      this.options.logger?.info({ model, version, was: ready.sha256, now: sha256 }, 'loaded artifact is no longer the registry’s; replacing it');
      await this.unloadIf(ready, 'replaced');
    }
    const loadKey = `${keyOf(model, version)}@${sha256}`;
    let pending = this.loading.get(loadKey);
    if (!pending) {
      pending = this.load(current).finally(() => this.loading.delete(loadKey));
      this.loading.set(loadKey, pending);
    }
    return pending;
  }

  /**
   * Checks loaded versions against the registry and unloads those whose
   * model or version is gone, archived, or now another artifact. Only a
   * definite answer unloads: a registry that cannot be reached changes nothing.
   * Returns how many were unloaded.
   */
  async reconcile(model?: string): Promise<number> {
    const targets = this.list().filter((m) => model === undefined || m.version.model === model);
    const outcomes = await Promise.all(
      targets.map(async (m) => {
        let why: string | undefined;
        try {
          const current = await this.versions.getVersion(m.version.model, m.version.version);
          if (current.sha256 !== m.sha256) why = 'replaced';
          else if (current.state === VersionState.VERSION_STATE_ARCHIVED) why = 'archived';
        } catch (err) {
          if (statusOf(err) === status.NOT_FOUND) why = 'deleted';
        }
        return why ? this.unloadIf(m, why) : false;
      }),
    );
    return outcomes.filter(Boolean).length;
  }

  /** Unloads a version after its in-flight work drains; false when it was not loaded. */
  async unload(model: string, version: number): Promise<boolean> {
    const found = this.loaded.get(keyOf(model, version));
    return found ? this.unloadIf(found, 'asked') : false;
  }

  /** Unloads everything (after draining). */
  async shutdown(): Promise<void> {
    await Promise.allSettled([...this.loading.values()]);
    await Promise.all(this.list().map((m) => this.unloadIf(m, 'shutdown')));
  }

  /** Unloads `found` if it is still the loaded session of its name. */
  private async unloadIf(found: LoadedModel, why: string): Promise<boolean> {
    const { model, version } = found.version;
    if (this.loaded.get(keyOf(model, version)) !== found) return false;
    this.loaded.delete(keyOf(model, version));
    await found.unload();
    this.meter.rebase();
    this.options.logger?.info({ model, version, sha256: found.sha256, why, memoryBytes: found.memoryBytes }, 'unloaded model version');
    this.events.emit('unloaded', found.version);
    return true;
  }

  private async load(version: ModelVersion): Promise<LoadedModel> {
    const { model, version: number } = version;
    const need = predictCost(version);
    if (need > this.options.memoryBudgetBytes) {
      throw new ResourceExhaustedError(
        `${model}:${number} needs about ${need} bytes, more than this node's whole memory budget of ${this.options.memoryBudgetBytes} bytes (INFERENCE_MEMORY_BUDGET)`,
        { retryElsewhere: true },
      );
    }
    await this.makeRoom(need);
    const path = await this.artifacts.path(version.sha256, version.sizeBytes);
    await this.makeRoom(need);
    this.meter.growth();
    const loaded = await LoadedModel.load(version, path, this.options, (event: BatchEvent) => {
      // Arena growth shows on a version's first runs with a new input size: charge it to that version.
      loaded.memoryBytes += this.meter.growthThrottled();
      this.events.emit('batch', { ...event, model, version: number });
    });
    const measured = this.meter.growth();
    loaded.memoryBytes = Math.max(need, measured);
    this.loaded.set(keyOf(model, number), loaded);
    this.options.logger?.info(
      { model, version: number, sha256: version.sha256, predictedBytes: need, measuredBytes: measured, memoryBytes: loaded.memoryBytes, runsOn: loaded.runsOn },
      'loaded model version',
    );
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
      await this.unloadIf(victim, 'least recently used, for memory');
    }
    if (this.memoryUsedBytes + need > budget) {
      throw new ResourceExhaustedError(
        `memory budget of ${budget} bytes is held by versions with work in flight (${this.memoryUsedBytes} used, ${need} more needed); retry shortly`,
        { retryElsewhere: true },
      );
    }
  }
}
