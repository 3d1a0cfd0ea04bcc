import fc from 'fast-check';
import { homeNodes, rankNodes } from './rendezvous';

describe('rendezvous hashing', () => {
  it('ranks the same way whatever the input order', () => {
    expect(rankNodes('m:1', ['a', 'b', 'c', 'd'])).toEqual(rankNodes('m:1', ['d', 'c', 'b', 'a']));
  });

  it('moves only the keys whose homes included a removed node', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 3, maxLength: 8 }), fc.nat(), (nodes, pick) => {
        const removed = nodes[pick % nodes.length];
        const remaining = nodes.filter((n) => n !== removed);
        for (let v = 1; v <= 40; v++) {
          const before = homeNodes('model', v, nodes, 2);
          const after = homeNodes('model', v, remaining, 2);
          if (!before.includes(removed)) expect(after).toEqual(before);
          else expect(after).toEqual(expect.arrayContaining(before.filter((n) => n !== removed)));
        }
      }),
    );
  });

  it('moves only the keys the added node now heads, to that node', () => {
    const nodes = ['n1', 'n2', 'n3'];
    for (let v = 1; v <= 100; v++) {
      const before = homeNodes('m', v, nodes, 1)[0];
      const after = homeNodes('m', v, [...nodes, 'n4'], 1)[0];
      if (after !== before) expect(after).toBe('n4');
    }
  });

  it('spreads model versions over the nodes', () => {
    const counts = new Map<string, number>();
    for (let v = 1; v <= 300; v++) {
      const home = homeNodes('m', v, ['a', 'b', 'c'], 1)[0];
      counts.set(home, (counts.get(home) ?? 0) + 1);
    }
    for (const n of ['a', 'b', 'c']) expect(counts.get(n)).toBeGreaterThan(60);
  });
});
