import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './temp-dir';

/**
 * Runs `node <script> <args>` and answers the npm packages it required before
 * it exited (a preloaded hook records them), sorted: how a test sees that a
 * command stays away from a heavy dependency.
 */
export async function packagesLoadedBy(script: string, args: string[], options: { timeoutMs?: number } = {}): Promise<string[]> {
  const dir = tempDir('maas-loaded-');
  try {
    const hook = join(dir.path, 'hook.cjs');
    const out = join(dir.path, 'loaded.json');
    writeFileSync(
      hook,
      `const M = require('module'); const load = M._load; const seen = new Set();
       M._load = function (request, ...rest) { if (!/^[./]/.test(request) && !request.startsWith('node:') && !M.isBuiltin(request)) seen.add(request); return load.call(this, request, ...rest); };
       process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, JSON.stringify([...seen])));`,
    );
    await promisify(execFile)(process.execPath, ['-r', hook, script, ...args], { timeout: options.timeoutMs ?? 20_000 });
    return (JSON.parse(readFileSync(out, 'utf8')) as string[]).sort();
  } finally {
    dir.remove();
  }
}
