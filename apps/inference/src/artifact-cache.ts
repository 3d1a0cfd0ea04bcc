import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Download } from '@maas/registry-client';
import { InternalError } from '@maas/rpc';

/** Where artifacts come from: the registry client fits. */
export interface ArtifactSource {
  download(target: { sha256: string }, opts?: { signal?: AbortSignal }): Promise<Download>;
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * A local content-addressed cache of model artifacts: `<dir>/<sha256>.onnx`.
 * A file is only ever there complete and verified (downloaded to a temp name,
 * hashed while written, renamed). Concurrent requests for one artifact share
 * one download.
 */
export class ArtifactCache {
  private readonly inFlight = new Map<string, Promise<string>>();
  private readonly verified = new Set<string>();

  constructor(
    private readonly dir: string,
    private readonly source: ArtifactSource,
  ) {}

  /** Path of the verified artifact, downloading it first if needed. */
  path(sha256: string, sizeBytes: number): Promise<string> {
    let pending = this.inFlight.get(sha256);
    if (!pending) {
      pending = this.fetch(sha256, sizeBytes).finally(() => this.inFlight.delete(sha256));
      this.inFlight.set(sha256, pending);
    }
    return pending;
  }

  /** Downloads started so far (for tests: concurrent first requests make one). */
  downloads = 0;

  private async fetch(sha256: string, sizeBytes: number): Promise<string> {
    await mkdir(this.dir, { recursive: true });
    const target = join(this.dir, `${sha256}.onnx`);
    const existing = await stat(target).catch(() => undefined);
    if (existing && existing.size === sizeBytes) {
      // Verified once per process: a file damaged on disk is fetched again, never served.
      if (this.verified.has(sha256) || (await sha256OfFile(target)) === sha256) {
        this.verified.add(sha256);
        return target;
      }
    }
    this.downloads += 1;
    const temp = join(this.dir, `.${sha256}.${randomBytes(4).toString('hex')}.part`);
    const download = await this.source.download({ sha256 });
    const hash = createHash('sha256');
    const file = await open(temp, 'w');
    try {
      let size = 0;
      for await (const chunk of download.chunks) {
        hash.update(chunk);
        size += chunk.length;
        await file.write(chunk);
      }
      await file.sync();
      await file.close();
      const got = hash.digest('hex');
      if (got !== sha256 || size !== sizeBytes) {
        throw new InternalError(`artifact ${sha256} arrived with sha256 ${got} and ${size} bytes (expected ${sizeBytes}); not cached`);
      }
      await rename(temp, target);
      this.verified.add(sha256);
      return target;
    } catch (err) {
      await file.close().catch(() => undefined);
      await rm(temp, { force: true });
      download.cancel();
      throw err;
    }
  }
}
