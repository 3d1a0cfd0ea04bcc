import { SERVICE_INFERENCE, StaticDiscovery } from '@maas/discovery';
import { NodePool } from '@maas/inference-client';
import { PredictRouter, serviceMs } from './predict-router';
import type { VersionResolver } from './version-resolver';

describe('serviceMs', () => {
  it('takes out the wait in the node queue and shares the rest among the calls outstanding on the node', () => {
    // A home under overload: 2.4 s round trip, 2 s of it queued, 20 calls outstanding: 20 ms a call.
    expect(serviceMs(2400, 2000, 20)).toBe(20);
    // A node behind a 250 ms delay, one call at a time: as slow as it is.
    expect(serviceMs(255, 0, 1)).toBe(255);
  });

  it('never goes below zero or divides by less than one call', () => {
    expect(serviceMs(10, 12, 1)).toBe(0);
    expect(serviceMs(10, 0, 0)).toBe(10);
  });
});

describe('PredictRouter.candidates', () => {
  const addresses = ['127.0.0.1:1', '127.0.0.1:2', '127.0.0.1:3'];
  const local = async () => {
    throw new Error('not called here');
  };

  it('sends to the least busy home, and between equally busy homes to the node in this process', async () => {
    for (const own of addresses) {
      const pool = new NodePool(new StaticDiscovery({ [SERVICE_INFERENCE]: addresses }), { inProcess: { id: own, address: own, predict: local } });
      const router = new PredictRouter(pool, {} as VersionResolver, { homeNodes: 3 });
      try {
        const first = router.candidates('m', 1)[0];
        expect(first.instance.address).toBe(own);
        expect(first.local).toBeDefined();
        // Busier than the others: no longer first, the hop is worth it.
        first.inFlight = 1;
        expect(router.candidates('m', 1)[0].instance.address).not.toBe(own);
      } finally {
        await pool.shutdown();
      }
    }
  });
});
