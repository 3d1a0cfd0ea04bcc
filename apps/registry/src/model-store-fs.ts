import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { ModelVersion } from '@maas/proto';
import { validateModelName } from '@maas/rpc';
import type { ModelRecord, ModelStore, StagedArtifact } from './model-store';

const MODEL_FILE = 'model.json';
const MANIFEST_FILE = 'manifest.json';
const ARTIFACT_FILE = 'model.onnx';
const STAGING_DIR = '.staging';

async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes a file whole or not at all: temp file, fsync, rename, fsync of the folder. */
async function writeFileAtomic(dir: string, name: string, data: string, stagingDir: string): Promise<void> {
  const temp = join(stagingDir, `${name}.${randomBytes(6).toString('hex')}`);
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, join(dir, name));
  await fsyncPath(dir);
}

interface ModelFile {
  name: string;
  description: string;
  tags: string[];
  createTime: string;
  updateTime: string;
  aliases: Record<string, number>;
}

/**
 * {@link ModelStore} on a local file system, laid out like Triton's and TF
 * Serving's model repositories: `<root>/<model>/model.json`,
 * `<root>/<model>/<version>/model.onnx` and `manifest.json`. Uploads are
 * staged under `<root>/.staging` (same file system, so renames are atomic)
 * and moved into place as a whole folder.
 */
export class FsModelStore implements ModelStore {
  private readonly staging: string;
  /** One commit at a time per model, so version numbers are never handed out twice. */
  private readonly commitChains = new Map<string, Promise<unknown>>();

  private constructor(readonly root: string) {
    this.staging = join(root, STAGING_DIR);
  }

  /** Opens (creating if needed) a repository and clears what a crash left in staging. */
  static async open(root: string): Promise<FsModelStore> {
    const store = new FsModelStore(root);
    await mkdir(root, { recursive: true });
    await rm(store.staging, { recursive: true, force: true });
    await mkdir(store.staging, { recursive: true });
    return store;
  }

  async freeBytes(): Promise<number> {
    const fs = await statfs(this.root);
    return fs.bavail * fs.bsize;
  }

  async listModels(): Promise<ModelRecord[]> {
    const entries = await readdir(this.root, { withFileTypes: true });
    const names = entries.filter((e) => e.isDirectory() && e.name !== STAGING_DIR).map((e) => e.name).sort();
    const records = await Promise.all(names.map((name) => this.getModel(name)));
    return records.filter((r): r is ModelRecord => r !== undefined);
  }

  async getModel(name: string): Promise<ModelRecord | undefined> {
    const text = await this.readOptional(join(this.modelDir(name), MODEL_FILE));
    if (text === undefined) return undefined;
    const file = JSON.parse(text) as ModelFile;
    return { ...file, createTime: new Date(file.createTime), updateTime: new Date(file.updateTime) };
  }

  async putModel(record: ModelRecord): Promise<void> {
    const dir = this.modelDir(record.name);
    await mkdir(dir, { recursive: true });
    const file: ModelFile = { ...record, createTime: record.createTime.toISOString(), updateTime: record.updateTime.toISOString() };
    await writeFileAtomic(dir, MODEL_FILE, `${JSON.stringify(file, null, 2)}\n`, this.staging);
  }

  async deleteModel(name: string): Promise<void> {
    // Out of sight in one rename, then removed at leisure (or at the next start).
    const graveyard = join(this.staging, `deleted-${name}-${randomBytes(6).toString('hex')}`);
    try {
      await rename(this.modelDir(name), graveyard);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await fsyncPath(this.root);
    await rm(graveyard, { recursive: true, force: true });
  }

  async listVersions(model: string): Promise<ModelVersion[]> {
    const numbers = await this.versionNumbers(model);
    const versions = await Promise.all(numbers.map((n) => this.getVersion(model, n)));
    return versions.filter((v): v is ModelVersion => v !== undefined);
  }

  async getVersion(model: string, version: number): Promise<ModelVersion | undefined> {
    const text = await this.readOptional(join(this.modelDir(model), String(version), MANIFEST_FILE));
    return text === undefined ? undefined : ModelVersion.fromJSON(JSON.parse(text));
  }

  async putVersion(version: ModelVersion): Promise<void> {
    const dir = join(this.modelDir(version.model), String(version.version));
    await writeFileAtomic(dir, MANIFEST_FILE, this.manifestText(version), this.staging);
  }

  async stage(): Promise<StagedArtifact> {
    const dir = join(this.staging, `upload-${randomBytes(8).toString('hex')}`);
    await mkdir(dir);
    return { path: join(dir, ARTIFACT_FILE), discard: () => rm(dir, { recursive: true, force: true }) };
  }

  commitVersion(model: string, staged: StagedArtifact, build: (version: number) => ModelVersion): Promise<ModelVersion> {
    const previous = this.commitChains.get(model) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(() => this.commitNow(model, staged, build));
    this.commitChains.set(model, next);
    const cleanup = () => {
      if (this.commitChains.get(model) === next) this.commitChains.delete(model);
    };
    next.then(cleanup, cleanup);
    return next;
  }

  readArtifact(model: string, version: number, chunkSize: number): Readable {
    return createReadStream(join(this.modelDir(model), String(version), ARTIFACT_FILE), { highWaterMark: chunkSize });
  }

  async shutdown(): Promise<void> {
    await Promise.allSettled([...this.commitChains.values()]);
  }

  private async commitNow(model: string, staged: StagedArtifact, build: (version: number) => ModelVersion): Promise<ModelVersion> {
    const numbers = await this.versionNumbers(model);
    const number = (numbers.at(-1) ?? 0) + 1;
    const manifest = build(number);
    const stagedDir = join(staged.path, '..');
    const manifestPath = join(stagedDir, MANIFEST_FILE);
    const handle = await open(manifestPath, 'w');
    try {
      await handle.writeFile(this.manifestText(manifest));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fsyncPath(staged.path);
    await fsyncPath(stagedDir);
    await rename(stagedDir, join(this.modelDir(model), String(number)));
    await fsyncPath(this.modelDir(model));
    return manifest;
  }

  private async versionNumbers(model: string): Promise<number[]> {
    let entries: string[];
    try {
      entries = await readdir(this.modelDir(model));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const numbers: number[] = [];
    for (const entry of entries) {
      if (!/^[1-9][0-9]*$/.test(entry)) continue;
      // A version folder only exists once complete (it arrives by rename), but check anyway.
      const manifest = await stat(join(this.modelDir(model), entry, MANIFEST_FILE)).catch(() => undefined);
      if (manifest) numbers.push(Number(entry));
    }
    return numbers.sort((a, b) => a - b);
  }

  private manifestText(version: ModelVersion): string {
    return `${JSON.stringify(ModelVersion.toJSON(version), null, 2)}\n`;
  }

  private modelDir(name: string): string {
    // Names are validated at the API; checking again here keeps every path inside the root.
    return join(this.root, validateModelName(name));
  }

  private async readOptional(path: string): Promise<string | undefined> {
    try {
      return await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }
}
