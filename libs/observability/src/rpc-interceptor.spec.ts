import { WarnLimiter } from './rpc-interceptor';

describe('WarnLimiter', () => {
  it('lets 10 lines a second through per key and counts the rest on the next line logged', () => {
    const limiter = new WarnLimiter();
    const t = 5_000_000;
    const first = Array.from({ length: 25 }, (_, i) => limiter.admit('Predict:8', t + i));
    expect(first.filter((a) => a.log)).toHaveLength(10);
    // Another key has its own allowance.
    expect(limiter.admit('Predict:14', t + 30)).toEqual({ log: true, suppressed: 0 });
    // The next second: logged, saying 15 were left out.
    expect(limiter.admit('Predict:8', t + 1000)).toEqual({ log: true, suppressed: 15 });
    expect(limiter.admit('Predict:8', t + 1001)).toEqual({ log: true, suppressed: 0 });
  });
});
