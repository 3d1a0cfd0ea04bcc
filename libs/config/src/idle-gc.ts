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
  /** Growth of held memory since the lowest level seen (at the last collection) that makes an idle process collect, in bytes. */
  growthBytes: number;
  /** Event-loop utilization at or under which the process counts as idle. @default 0.1 */
  idleUtilization?: number;
}

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
 * holds (V8's heap and ArrayBuffers) has grown by `growthBytes` over the
 * lowest level seen since the last collection; under steady load it never
 * runs (the loop is busy), and V8 collects as it does anyway.
 */
export class IdleGc {
  /** Lowest held memory seen since the last collection this made. */
  private floor = Infinity;
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
    this.floor = Math.min(this.floor, held);
    if (busy > (this.options.idleUtilization ?? 0.1) || held - this.floor < this.options.growthBytes) return false;
    this.collect();
    this.collections += 1;
    this.floor = this.memory.held();
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
