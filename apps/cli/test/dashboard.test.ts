import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '@maas/testing';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'gen' || name === 'node_modules' ? [] : sources(path);
    return name.endsWith('.ts') && !name.endsWith('.spec.ts') ? [path] : [];
  });
}

describe('Grafana dashboard', () => {
  it('only queries metrics the services export', () => {
    const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'deploy/grafana/dashboards/maas-overview.json'), 'utf8')) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    };
    const code = [...sources(join(REPO_ROOT, 'apps')), ...sources(join(REPO_ROOT, 'libs'))].map((f) => readFileSync(f, 'utf8')).join('\n');
    const exported = new Set([...code.matchAll(/['`](maas_[a-z_]+)['`]/g)].map((m) => m[1]));
    // Process metrics come from prom-client's defaults with the maas_ prefix.
    exported.add('maas_process_resident_memory_bytes');
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        for (const [name] of target.expr.matchAll(/maas_[a-z_]+/g)) {
          const base = name.replace(/_(bucket|sum|count)$/, '');
          expect({ panel: panel.title, metric: base, exported: exported.has(base) }).toEqual({ panel: panel.title, metric: base, exported: true });
        }
      }
    }
  });
});
