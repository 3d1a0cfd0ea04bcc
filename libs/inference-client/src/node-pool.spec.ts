import type { Discovery, ServiceInstance } from '@maas/discovery';
import { waitFor } from '@maas/testing';
import { NodePool } from './node-pool';

/** A discovery whose answers the test gives. */
function scriptedDiscovery(): Discovery & { say(instances: ServiceInstance[]): void } {
  let listener: ((instances: ServiceInstance[]) => void) | undefined;
  return {
    instances: () => [],
    watch: (_service, l) => {
      listener = l;
      return () => (listener = undefined);
    },
    ready: async () => [],
    shutdown: async () => undefined,
    say: (instances) => listener?.(instances),
  };
}

const node = (id: string, port: number): ServiceInstance => ({ id, address: `127.0.0.1:${port}`, host: '127.0.0.1', port, tags: [], meta: {} });

describe('NodePool when discovery suddenly lists no node', () => {
  it('keeps the known nodes for the grace, then believes it', async () => {
    const discovery = scriptedDiscovery();
    const pool = new NodePool(discovery, { emptyGraceMs: 300 });
    try {
      discovery.say([node('a', 1), node('b', 2)]);
      discovery.say([]);
      expect(pool.all().map((n) => n.instance.id)).toEqual(['a', 'b']);
      await waitFor(() => pool.all().length === 0, { timeoutMs: 5000, description: 'the empty set after the grace' });
    } finally {
      await pool.shutdown();
    }
  });

  it('takes the nodes that register again during the grace, and an empty answer at once with no grace', async () => {
    const discovery = scriptedDiscovery();
    const pool = new NodePool(discovery, { emptyGraceMs: 60_000 });
    const strict = scriptedDiscovery();
    const believing = new NodePool(strict, { emptyGraceMs: 0 });
    try {
      discovery.say([node('a', 1), node('b', 2)]);
      discovery.say([]);
      discovery.say([node('b', 2)]);
      expect(pool.all().map((n) => n.instance.id)).toEqual(['b']);
      strict.say([node('a', 1)]);
      strict.say([]);
      expect(believing.all()).toEqual([]);
    } finally {
      await pool.shutdown();
      await believing.shutdown();
    }
  });
});
