import { readdirSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';

/** Folder holding `maas/v1/*.proto`, for dynamic loading (reflection, tests). */
export const protoRoot = resolve(__dirname, '../../../proto');

/** Every `.proto` file of the contract, relative to {@link protoRoot}. */
export function protoFiles(): string[] {
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
      const full = join(dir, entry.name);
      if (entry.isDirectory()) return walk(full);
      return entry.name.endsWith('.proto') ? [relative(protoRoot, full)] : [];
    });
  return walk(protoRoot).sort();
}
