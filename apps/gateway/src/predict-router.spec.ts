import { serviceMs } from './predict-router';

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
