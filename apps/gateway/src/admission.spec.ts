import { status } from '@grpc/grpc-js';
import { Admission } from './admission';

describe('Admission', () => {
  it('always admits the first calls of a version, whatever its rate', () => {
    const a = new Admission({ minInFlight: 2 });
    expect(() => a.admit('m:1', 1_000_000 + 10, 1_000_000)).not.toThrow();
    expect(() => a.admit('m:1', 1_000_000 + 10, 1_000_000)).not.toThrow();
  });

  it('refuses at once a call the calls ahead of it would keep past its deadline, by in flight ÷ answers per second while saturated', () => {
    const a = new Admission({ minInFlight: 1, budgetShare: 1, windowMs: 1000 });
    const now = 1_000_000;
    // Busy for the last second: 15 calls in, 10 answered over it (10/s), 5 still in flight.
    for (let i = 0; i < 15; i++) a.admit('m:1', now + 60_000, now - 1000);
    for (let i = 0; i < 10; i++) a.done('m:1', true, now - 900 + i * 90);
    expect(() => a.admit('m:1', now + 1000, now)).not.toThrow(); // 6 ahead now: 600 ms < 1 s
    expect(() => a.admit('m:1', now + 300, now)).toThrow(expect.objectContaining({ code: status.RESOURCE_EXHAUSTED, message: expect.stringMatching(/overloaded \(m:1\): 6 calls are ahead, answered at 10.0\/s \(about 600 ms\), beyond this call's deadline in 300 ms/) }));
    // Other versions are not held back.
    expect(() => a.admit('other:1', now + 300, now)).not.toThrow();
  });

  it('does not take the few answers of a quiet version for its capacity: a burst after them is admitted until it has been measured', () => {
    const a = new Admission({ minInFlight: 4, budgetShare: 0.5, windowMs: 2000, minAnswers: 4 });
    const now = 1_000_000;
    // Three answers, one at a time, over the last two seconds: 1.5 answers per second asked, not served.
    for (const t of [now - 1900, now - 1000, now - 100]) {
      a.admit('m:1', t + 30_000, t);
      a.done('m:1', true, t + 5);
    }
    // A burst of 240 with 30 s deadlines: at 1.5/s, 240 would be 160 s of work; none is refused on that.
    for (let i = 0; i < 240; i++) expect(() => a.admit('m:1', now + 30_000, now)).not.toThrow();
    // Saturated for a second since, with 3 answers in it: still too few to measure by.
    for (const t of [now + 300, now + 500, now + 700]) a.done('m:1', true, t);
    expect(() => a.admit('m:1', now + 1000 + 30_000, now + 1000)).not.toThrow();
    // A fourth: now the version is measured (4/s), and far too slow for the 238 calls ahead.
    a.done('m:1', true, now + 900);
    expect(() => a.admit('m:1', now + 1000 + 30_000, now + 1000)).toThrow(expect.objectContaining({ code: status.RESOURCE_EXHAUSTED }));
  });

  it('admits while no answer has come in the window: capacity is unknown, not zero', () => {
    const a = new Admission({ minInFlight: 1 });
    for (let i = 0; i < 50; i++) a.admit('cold:1', 1_000_000 + 100, 1_000_000);
  });
});
