import { waitFor } from '@maas/testing';
import { fullGcFunction, IdleGc, startIdleGc, type HeldMemory } from './idle-gc';

const MiB = 2 ** 20;

/** A process whose held memory and utilization the test sets. */
function fakeMemory(): HeldMemory & { bytes: number; busy: number } {
  return {
    bytes: 100 * MiB,
    busy: 0,
    held() {
      return this.bytes;
    },
    utilization() {
      return this.busy;
    },
  };
}

describe('IdleGc', () => {
  it('collects once the loop is idle and held memory grew by the threshold over its floor, then measures from what is left', () => {
    const memory = fakeMemory();
    const collect = jest.fn(() => (memory.bytes = 90 * MiB));
    const gc = new IdleGc(memory, collect, { growthBytes: 16 * MiB });
    expect(gc.tick()).toBe(false); // the floor: 100 MiB
    memory.bytes = 115 * MiB;
    expect(gc.tick()).toBe(false); // 15 MiB over it
    memory.bytes = 116 * MiB;
    expect(gc.tick()).toBe(true);
    expect(collect).toHaveBeenCalledTimes(1);
    expect(gc.collections).toBe(1);
    // The new floor is what the collection left (90 MiB), not the old one.
    memory.bytes = 105 * MiB;
    expect(gc.tick()).toBe(false);
    memory.bytes = 106 * MiB;
    expect(gc.tick()).toBe(true);
  });

  it('never collects while the loop is busy, however much is held, and does once it goes quiet', () => {
    const memory = fakeMemory();
    const collect = jest.fn();
    const gc = new IdleGc(memory, collect, { growthBytes: 16 * MiB });
    gc.tick();
    memory.bytes = 400 * MiB;
    memory.busy = 0.6;
    for (let i = 0; i < 5; i++) expect(gc.tick()).toBe(false);
    memory.busy = 0.11;
    expect(gc.tick()).toBe(false);
    memory.busy = 0.02;
    expect(gc.tick()).toBe(true);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it('follows the floor down when V8 collects by itself', () => {
    const memory = fakeMemory();
    const collect = jest.fn();
    const gc = new IdleGc(memory, collect, { growthBytes: 16 * MiB });
    gc.tick();
    memory.bytes = 60 * MiB;
    gc.tick();
    memory.bytes = 80 * MiB;
    expect(gc.tick()).toBe(true);
  });
});

describe('IdleGc after a collection that gives back too little', () => {
  it('tries again 1, 2, 4 ... ticks later, and gets the memory of calls that ended after the first try', () => {
    const memory = fakeMemory();
    let live = 80 * MiB; // still held by calls in flight at the first try
    const collect = jest.fn(() => (memory.bytes = 100 * MiB + live));
    const gc = new IdleGc(memory, collect, { growthBytes: 16 * MiB });
    gc.tick();
    memory.bytes = 200 * MiB;
    expect(gc.tick()).toBe(true); // leaves 180 MiB
    expect(gc.tick()).toBe(false); // waits one tick
    live = 0; // the calls ended: their memory is garbage now, and nothing allocates
    expect(gc.tick()).toBe(true);
    expect(memory.bytes).toBe(100 * MiB);
    for (let i = 0; i < 5; i++) expect(gc.tick()).toBe(false);
    expect(collect).toHaveBeenCalledTimes(2);
  });

  it('takes a level it cannot bring down as the new floor after the longest wait, and then leaves it alone', () => {
    const memory = fakeMemory();
    const collect = jest.fn(); // frees nothing: the process holds more for good
    const gc = new IdleGc(memory, collect, { growthBytes: 16 * MiB });
    gc.tick();
    memory.bytes = 200 * MiB;
    const tries: number[] = [];
    for (let t = 1; t <= 200; t++) if (gc.tick()) tries.push(t);
    // Tries with 1, 2, 4, 8 and 16 ticks between them, then once more 32 ticks on, and no more.
    expect(tries).toEqual([1, 3, 6, 11, 20, 37]);
    memory.bytes = 215 * MiB;
    expect(gc.tick()).toBe(false);
    memory.bytes = 216 * MiB;
    expect(gc.tick()).toBe(true);
  });
});

describe('fullGcFunction', () => {
  it('frees the memory of unreachable Buffers', async () => {
    const gc = fullGcFunction();
    gc();
    const before = process.memoryUsage().arrayBuffers;
    // Made and dropped in a function of its own, so nothing on this frame keeps them.
    const held = ((): number => Array.from({ length: 64 }, () => Buffer.alloc(MiB, 1)).reduce((n, b) => n + b.length, 0))();
    expect(held).toBe(64 * MiB);
    gc();
    // V8 frees the memory of dead ArrayBuffers on a background thread, moments after the collection.
    await waitFor(() => process.memoryUsage().arrayBuffers < before + 8 * MiB, { timeoutMs: 2000, intervalMs: 20, description: 'the Buffers freed' });
  });
});

describe('startIdleGc', () => {
  it('is off at 0 and otherwise looks on a timer that does not hold the process', () => {
    expect(startIdleGc({ idleGcMiB: 0 }).gc).toBeUndefined();
    const started = startIdleGc({ idleGcMiB: 16 });
    expect(started.gc).toBeInstanceOf(IdleGc);
    started.stop();
  });
});
