import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { CancelledError, ResourceExhaustedError } from '@maas/rpc';
import type { StagedArtifact } from './model-store';

/** What {@link writeStagedArtifact} measured. */
export interface WrittenArtifact {
  sha256: string;
  sizeBytes: number;
}

/**
 * Streams chunks into the staged file while hashing and counting, fsyncs it,
 * and stops with RESOURCE_EXHAUSTED the moment the size limit is passed.
 * The caller discards the staged file on any error.
 */
export async function writeStagedArtifact(
  staged: StagedArtifact,
  chunks: AsyncIterable<Uint8Array>,
  limits: { maxBytes: number; signal?: AbortSignal },
): Promise<WrittenArtifact> {
  const hash = createHash('sha256');
  const file = await open(staged.path, 'wx');
  let size = 0;
  try {
    for await (const chunk of chunks) {
      if (limits.signal?.aborted) throw new CancelledError('upload cancelled by the client; nothing was stored');
      size += chunk.length;
      if (size > limits.maxBytes) {
        throw new ResourceExhaustedError(`artifact exceeds the registry's upload limit of ${limits.maxBytes} bytes; nothing was stored`);
      }
      hash.update(chunk);
      let written = 0;
      while (written < chunk.length) {
        const { bytesWritten } = await file.write(chunk, written, chunk.length - written);
        written += bytesWritten;
      }
    }
    if (limits.signal?.aborted) throw new CancelledError('upload cancelled by the client; nothing was stored');
    await file.sync();
  } finally {
    await file.close();
  }
  return { sha256: hash.digest('hex'), sizeBytes: size };
}
