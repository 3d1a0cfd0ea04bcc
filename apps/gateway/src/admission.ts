import { ResourceExhaustedError } from '@maas/rpc';

/** Options of {@link Admission}. */
export interface AdmissionOptions {
  /** Calls of one version always admitted, whatever the estimate (light load, cold start, and calls held by a frozen node that hedges will rescue). @default 32 */
  minInFlight?: number;
  /** Share of the caller's remaining time the wait may take, leaving the rest for the run and the way back (estimates of a queue under load err by tens of percent). @default 0.5 */
  budgetShare?: number;
  /** Window over which the completion rate is measured, in ms. @default 2000 */
  windowMs?: number;
  /** Answers the rate must rest on before anything is refused by it (answers of stacked calls come in clumps). @default 8 */
  minAnswers?: number;
}

interface VersionLoad {
  inFlight: number;
  /** Completion times (epoch ms), a ring. */
  done: Float64Array;
  next: number;
  count: number;
  /** Since when (epoch ms) the version has had at least minInFlight calls in flight; NaN when it has not. */
  saturatedSince: number;
}

const RING = 512;

/**
 * Admission by what can finish before each caller's deadline, per model
 * version, at the gateway: by Little's law the calls ahead of a new one take
 * about `in flight ÷ completion rate` to clear. The rate is measured only
 * over the time the version has been saturated (at least `minInFlight` calls
 * in flight): answers of an idle version say how much was asked of it, not
 * what it can do, and a burst after a quiet spell must not be refused on
 * them. A call that would not be
 * answered within its deadline is refused at once with RESOURCE_EXHAUSTED,
 * before its bytes go anywhere, instead of waiting to expire in a queue (which
 * turns overload into DEADLINE_EXCEEDED, cancellations and memory).
 */
export class Admission {
  private readonly versions = new Map<string, VersionLoad>();
  private readonly minInFlight: number;
  private readonly budgetShare: number;
  private readonly windowMs: number;
  private readonly minAnswers: number;

  constructor(options: AdmissionOptions = {}) {
    this.minInFlight = options.minInFlight ?? 32;
    this.budgetShare = options.budgetShare ?? 0.5;
    this.windowMs = options.windowMs ?? 2000;
    this.minAnswers = options.minAnswers ?? 8;
  }

  /** Admits a call of `key` due by `deadline` (epoch ms), or throws RESOURCE_EXHAUSTED; call {@link done} after an admitted call. */
  admit(key: string, deadline: number, now = Date.now()): void {
    const load = this.load(key);
    if (load.inFlight >= this.minInFlight) {
      const rate = this.rate(load, now);
      // No answer yet in the window (a cold load, a slow model): capacity is unknown, so nothing is refused on it.
      const waitMs = rate > 0 ? (load.inFlight / rate) * 1000 : 0;
      const budget = (deadline - now) * this.budgetShare;
      if (waitMs > budget) {
        throw new ResourceExhaustedError(
          `overloaded (${key}): ${load.inFlight} calls are ahead, answered at ${rate.toFixed(1)}/s (about ${Math.round(waitMs)} ms), beyond this call's deadline in ${Math.max(0, Math.round(deadline - now))} ms; retry later`,
        );
      }
    }
    load.inFlight += 1;
    if (load.inFlight >= this.minInFlight && Number.isNaN(load.saturatedSince)) load.saturatedSince = now;
  }

  /** Calls of `key` admitted and not yet done. */
  inFlightOf(key: string): number {
    return this.versions.get(key)?.inFlight ?? 0;
  }

  /** Ends an admitted call; `answered` when a node answered it (the completions that measure capacity). */
  done(key: string, answered: boolean, now = Date.now()): void {
    const load = this.load(key);
    load.inFlight = Math.max(0, load.inFlight - 1);
    if (load.inFlight < this.minInFlight) load.saturatedSince = NaN;
    if (!answered) return;
    load.done[load.next] = now;
    load.next = (load.next + 1) % RING;
    load.count = Math.min(load.count + 1, RING);
  }

  /**
   * Answers per second over the part of the window the version has been
   * saturated (or over the ring, when it holds less time than that); 0, for
   * unknown, until it has been saturated for an eighth of the window and
   * given at least minAnswers answers in it.
   */
  private rate(load: VersionLoad, now: number): number {
    const since = Math.max(now - this.windowMs, load.saturatedSince);
    if (load.count === 0 || !(now - since >= this.windowMs / 8)) return 0;
    let inWindow = 0;
    let oldest = now;
    for (let i = 1; i <= load.count; i++) {
      const t = load.done[(load.next - i + RING) % RING];
      if (t < since) break;
      inWindow += 1;
      oldest = t;
    }
    // Too few answers to measure by (answers of stacked calls come in clumps): unknown, not slow.
    if (inWindow < Math.max(1, this.minAnswers)) return 0;
    // A full ring may cover less than the window: measure over the span it does cover.
    const span = inWindow === load.count && load.count === RING ? Math.max(1, now - oldest) : now - since;
    return (inWindow * 1000) / span;
  }

  private load(key: string): VersionLoad {
    let load = this.versions.get(key);
    if (!load) {
      if (this.versions.size >= 4096) this.versions.clear();
      load = { inFlight: 0, done: new Float64Array(RING), next: 0, count: 0, saturatedSince: NaN };
      this.versions.set(key, load);
    }
    return load;
  }
}
