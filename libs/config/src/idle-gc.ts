import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** What the idle collector reads of the process each tick. */
export interface HeldMemory {
  /** V8's heap in use plus the memory of ArrayBuffers (Node's Buffers included), in bytes. */
  held(): number;
  /** Share of the last tick the event loop was busy, 0 to 1. */
  utilization(): number;
}

/** Options of {@link IdleGc}. */
export interface IdleGcOptions {
  /** Growth of held memory over the lowest level seen (since a level was last accepted, see {@link IdleGc}) that makes an idle process collect, in bytes. */
  growthBytes: number;
  /** Event-loop utilization at or under which the process counts as idle. @default 0.1 */
  idleUtilization?: number;
}

/** Attempts stop backing off here: the attempt made with this backoff, should it fail too, makes the level it left the new floor. */
const MAX_BACKOFF_TICKS = 32;

/**
 * Collects garbage once a process goes quiet with memory to give back.
 *
 * V8 collects when JavaScript allocates. A service that has just come out of
 * a burst (an overload, a large upload) allocates next to nothing, so the
 * buffers the burst left behind, dead but not collected, keep their memory
 * until V8's memory reducer gets to them: 18-45 s after a 10x overload on
 * the gateway. With malloc handing large blocks back to the system on free,
 * resident size then falls below its level before the burst. This asks for
 * that collection as soon as the event loop is idle and what the process
 * holds (V8's heap and ArrayBuffers) is `growthBytes` over the lowest level
 * seen; under steady load it never runs (the loop is busy), and V8 collects
 * as it does anyway.
 *
 * A collection can come while the burst's last calls are still waiting (on a
 * deadline, say: the loop is idle meanwhile), and their memory dies after it
 * with nothing allocated since. So a collection that leaves the process
 * still `growthBytes` over its lowest level (or seems to: V8 frees dead
 * ArrayBuffers' memory on a background thread, moments after) is tried again
 * 1, 2, 4, 8 and 16 ticks later; once the last of those fails too, the
 * process holds more for good (a cache grew, a model loaded) and that level
 * becomes the new floor.
 */
export class IdleGc {
  /** Lowest held memory seen since the level was last accepted. */
  private floor = Infinity;
  /** Ticks to let pass before the next attempt. */
  private wait = 0;
  /** Ticks between attempts while they give back too little. */
  private backoff = 1;
  /** Collections this made. */
  collections = 0;

  constructor(
    private readonly memory: HeldMemory,
    private readonly collect: () => void,
    private readonly options: IdleGcOptions,
  ) {}

  /** One look: collects if the process is idle and holds enough more than its floor. */
  tick(): boolean {
    const held = this.memory.held();
    const busy = this.memory.utilization();
    const growth = this.options.growthBytes;
    this.floor = Math.min(this.floor, held);
    if (held - this.floor < growth) {
      this.wait = 0;
      this.backoff = 1;
      return false;
    }
    if (busy > (this.options.idleUtilization ?? 0.1)) return false;
    if (this.wait > 0) {
      this.wait -= 1;
      return false;
    }
    this.collect();
    this.collections += 1;
    const left = this.memory.held();
    this.floor = Math.min(this.floor, left);
    if (left - this.floor < growth) {
      this.backoff = 1;
    } else if (this.backoff >= MAX_BACKOFF_TICKS) {
      this.floor = left;
      this.backoff = 1;
    } else {
      this.wait = this.backoff;
      this.backoff *= 2;
    }
    return true;
  }
}

/** V8's full garbage collection, without `--expose-gc` on the command line. */
export function fullGcFunction(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  // The flag applies to contexts made after it is set: a fresh one hands over its `gc`.
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** This process's {@link HeldMemory}, its utilization measured between consecutive reads. */
export function processMemory(): HeldMemory {
  let last = performance.eventLoopUtilization();
  return {
    held() {
      const usage = process.memoryUsage();
      return usage.heapUsed + usage.arrayBuffers;
    },
    utilization() {
      const now = performance.eventLoopUtilization();
      const busy = performance.eventLoopUtilization(now, last).utilization;
      last = now;
      return busy;
    },
  };
}

/**
 * Starts this process's {@link IdleGc}, looking once a second (the timer
 * does not keep the process alive). `idleGcMiB` 0 leaves it off.
 */
export function startIdleGc(config: { idleGcMiB: number }): { stop(): void; gc?: IdleGc } {
  if (config.idleGcMiB <= 0) return { stop: () => undefined };
  const gc = new IdleGc(processMemory(), fullGcFunction(), { growthBytes: config.idleGcMiB * 2 ** 20 });
  const timer = setInterval(() => gc.tick(), 1000).unref();
  return { gc, stop: () => clearInterval(timer) };
}
