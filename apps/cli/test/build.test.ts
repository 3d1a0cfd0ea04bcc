import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { packagesLoadedBy, REPO_ROOT, tempDir } from '@maas/testing';

/**
 * The compiled build (tools/build.cjs; jest's global setup runs it): what the
 * image, compose and `npm start` run as plain node.
 */
const APPS = ['registry', 'inference', 'gateway', 'cli'];
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };

/** Bare package names a bundle requires at any point (npm packages are left as requires). */
function requiredPackages(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const names = new Set<string>();
  for (const [, spec] of text.matchAll(/\brequire\("([^"./][^"]*)"\)/g)) {
    if (spec.startsWith('node:') || builtinModules.includes(spec.split('/')[0])) continue;
    names.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]);
  }
  return [...names].sort();
}

describe('compiled build', () => {
  it('builds through nx as npm start does: every app, each once (the root package is no nx target of its own)', () => {
    const colored = execFileSync('npm', ['run', '-s', 'build', '--', '--skip-nx-cache'], { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, NX_DAEMON: 'false', NX_TUI: 'false', FORCE_COLOR: '0', NO_COLOR: '1' }, timeout: 120_000 });
    // eslint-disable-next-line no-control-regex
    const out = colored.replace(/\u001b\[[0-9;]*m/g, '');
    expect(out).toMatch(/Successfully ran target build for 4 projects/);
    expect(out).not.toMatch(/Recursive task invocation/);
  }, 150_000);

  it('bundles each app into dist/<app>/main.js requiring production dependencies only (the image has no others)', () => {
    for (const app of APPS) {
      const used = requiredPackages(join(REPO_ROOT, 'dist', app, 'main.js'));
      const notProduction = used.filter((name) => !(name in pkg.dependencies));
      expect({ app, notProduction }).toEqual({ app, notProduction: [] });
    }
    expect(pkg.dependencies).not.toHaveProperty('tsx');
    expect(readdirSync(join(REPO_ROOT, 'dist/inference'))).toContain('session-thread.cjs');
    expect(readdirSync(join(REPO_ROOT, 'dist/gateway/gen'))).toContain('gateway-descriptors.binpb');
  });

  it('answers maas --help loading commander alone: no gRPC, no protocol code, no onnxruntime', async () => {
    expect(await packagesLoadedBy(join(REPO_ROOT, 'dist/cli/main.js'), ['--help'])).toEqual(['commander']);
  });

  it('slims onnxruntime-node to the one Linux build an image runs', () => {
    const dir = tempDir('maas-slim-');
    try {
      const bin = join(dir.path, 'node_modules/onnxruntime-node/bin/napi-v6');
      for (const build of ['darwin/arm64', 'win32/x64', 'win32/arm64', 'linux/x64', 'linux/arm64']) {
        mkdirSync(join(bin, build), { recursive: true });
        writeFileSync(join(bin, build, 'onnxruntime_binding.node'), Buffer.alloc(1000));
      }
      const report = execFileSync(process.execPath, [join(REPO_ROOT, 'tools/slim-node-modules.cjs'), join(dir.path, 'node_modules'), '--arch', 'arm64'], { encoding: 'utf8' });
      expect(report).toMatch(/for linux\/arm64/);
      expect(readdirSync(bin)).toEqual(['darwin', 'linux', 'win32']);
      expect([readdirSync(join(bin, 'darwin')), readdirSync(join(bin, 'linux')), readdirSync(join(bin, 'win32'))]).toEqual([[], ['arm64'], []]);
    } finally {
      dir.remove();
    }
  });
});
