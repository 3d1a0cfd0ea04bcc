import { status } from '@grpc/grpc-js';
import { Admission } from './admission';

describe('Admission', () => {
  it('always admits the first calls of a version, whatever its rate', () => {
    const a = new Admission({ minInFlight: 2 });
    expect(() => a.admit('m:1', 1_000_000 + 10, 1_000_000)).not.toThrow();
    expect(() => a.admit('m:1', 1_000_000 + 10, 1_000_000)).not.toThrow();
  });

  it('refuses at once a call the calls ahead of it would keep past its deadline, by in flight ÷ answers per second', () => {
    const a = new Admission({ minInFlight: 1, budgetShare: 1, windowMs: 1000 });
    const now = 1_000_000;
    // 10 answers in the last second: 10/s.
    for (let i = 0; i < 10; i++) {
      a.admit('m:1', now + 60_000, now - 900);
      a.done('m:1', true, now - 900 + i * 90);
    }
    for (let i = 0; i < 5; i++) a.admit('m:1', now + 60_000, now); // 5 in flight: about 500 ms ahead
    expect(() => a.admit('m:1', now + 1000, now)).not.toThrow(); // 6 ahead now: 600 ms < 1 s
    expect(() => a.admit('m:1', now + 300, now)).toThrow(expect.objectContaining({ code: status.RESOURCE_EXHAUSTED, message: expect.stringMatching(/overloaded \(m:1\): 6 calls are ahead, answered at 10.0\/s \(about 600 ms\), beyond this call's deadline in 300 ms/) }));
    // Other versions are not held back.
    expect(() => a.admit('other:1', now + 300, now)).not.toThrow();
  });

  it('admits while no answer has come in the window: capacity is unknown, not zero', () => {
    const a = new Admission({ minInFlight: 1 });
    for (let i = 0; i < 50; i++) a.admit('cold:1', 1_000_000 + 100, 1_000_000);
  });
});
