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

describe('fullGcFunction', () => {
  it('frees the memory of unreachable Buffers at once', () => {
    const gc = fullGcFunction();
    gc();
    const before = process.memoryUsage().arrayBuffers;
    // Made and dropped in a function of its own, so nothing on this frame keeps them.
    const held = ((): number => Array.from({ length: 64 }, () => Buffer.alloc(MiB, 1)).reduce((n, b) => n + b.length, 0))();
    expect(held).toBe(64 * MiB);
    gc();
    expect(process.memoryUsage().arrayBuffers).toBeLessThan(before + 8 * MiB);
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
