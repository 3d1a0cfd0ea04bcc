import { Cancellation, CancelledError, type CancelSignal } from '@maas/rpc';
import type { NodeHandle } from '@maas/inference-client';

/** What {@link runAttempts} needs to send one request to its candidate nodes. */
export interface AttemptPlan<T> {
  /** Nodes in the order they may be tried. */
  candidates: NodeHandle[];
  /** Sends the request to one node; `signal` cancels that attempt. */
  send(node: NodeHandle, signal: CancelSignal): Promise<T>;
  /** The caller's cancellation. */
  signal: CancelSignal;
  /** After this long without an answer, a copy goes to the next candidate (when {@link mayHedge} agrees). */
  lateAfterMs: number;
  /** A node silent this long with calls outstanding is stuck: {@link onStuck}, and its calls are hedged at once. */
  stuckAfterMs: number;
  /** Whether a hedged copy may be sent now (a budget, so hedging never multiplies load). */
  mayHedge(): boolean;
  /** Whether a node's failure means another node may succeed (unlike, say, INVALID_ARGUMENT). */
  retryElsewhere(err: unknown): boolean;
  /** Whether a node is out of rotation. */
  isEjected(node: NodeHandle): boolean;
  /** `node` answered `ms` after the attempt was sent, when it had `load` calls outstanding (this one included). */
  onSuccess(node: NodeHandle, ms: number, answer: T, load: number): void;
  /** An attempt that lost the race still answered, `ms` after it was sent (what its node really takes). */
  onLateAnswer(node: NodeHandle, ms: number, answer: T, load: number): void;
  /** A retryable failure of `node`. */
  onFailure(node: NodeHandle, err: unknown): void;
  /** `node` has had calls outstanding for {@link stuckAfterMs} without answering any. */
  onStuck(node: NodeHandle): void;
  /** The error when every candidate failed; `last` is the last failure. */
  exhausted(last: unknown): Error;
}

/** How long a node has had calls outstanding without answering any (0: it is answering). */
export function silentForMs(node: NodeHandle, now = Date.now()): number {
  return node.silentSince === 0 ? 0 : now - node.silentSince;
}

/**
 * Sends a request to the first candidate and, as a picker and a retrying call
 * do in grpc-js, to the next on a retryable failure; and when an attempt is
 * late (see {@link AttemptPlan.lateAfterMs}) also to the next, keeping both:
 * the first answer wins. The attempts that lost are left to answer for up to
 * the stuck delay, so a slow node's real latency is still learnt (and its
 * in-flight count keeps routing away from it), then cancelled. A frozen node
 * (its connection open, nothing coming back) so costs a call its hedge delay,
 * not its deadline, and is reported stuck once it has been silent long enough.
 * Node in-flight counts and silence cover every attempt.
 */
export function runAttempts<T>(plan: AttemptPlan<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const active = new Map<NodeHandle, Cancellation>();
    let next = 0;
    let settled = false;
    let timer: NodeJS.Timeout | undefined;

    const finish = (settle: () => void, linger = false) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      plan.signal.removeEventListener('abort', onAbort);
      for (const control of active.values()) {
        if (linger) setTimeout(() => control.abort(), plan.stuckAfterMs).unref();
        else control.abort();
      }
      settle();
    };
    const onAbort = () => finish(() => reject(new CancelledError('the caller cancelled the call')));

    const launch = (): boolean => {
      while (next < plan.candidates.length) {
        const node = plan.candidates[next++];
        if (active.has(node)) continue;
        start(node);
        return true;
      }
      return false;
    };

    /** The node said something (an answer or an error of its own): it is not silent. */
    const heard = (node: NodeHandle) => {
      node.silentSince = node.inFlight > 0 ? Date.now() : 0;
    };

    const start = (node: NodeHandle) => {
      const control = new Cancellation();
      active.set(node, control);
      node.inFlight += 1;
      const load = node.inFlight;
      if (node.silentSince === 0) node.silentSince = Date.now();
      const started = performance.now();
      plan.send(node, control.signal).then(
        (answer) => {
          node.inFlight -= 1;
          heard(node);
          active.delete(node);
          if (settled) return plan.onLateAnswer(node, performance.now() - started, answer, load);
          plan.onSuccess(node, performance.now() - started, answer, load);
          finish(() => resolve(answer), true);
        },
        (err: unknown) => {
          node.inFlight -= 1;
          if (control.signal.aborted) {
            // Our own cancellation says nothing of the node; it stays as silent as it was.
            if (node.inFlight === 0) node.silentSince = 0;
          } else heard(node);
          active.delete(node);
          if (settled) return;
          if (plan.signal.aborted || !plan.retryElsewhere(err)) return finish(() => reject(err));
          plan.onFailure(node, err);
          if (!launch() && active.size === 0) finish(() => reject(plan.exhausted(err)));
        },
      );
      arm();
    };

    // Checked every lateAfterMs after the newest attempt: a hedge goes out when the budget allows,
    // or whatever the budget when the attempts running sit on nodes that are stuck or out of rotation.
    const arm = () => {
      clearTimeout(timer);
      if (next >= plan.candidates.length) return;
      timer = setTimeout(() => {
        if (settled || next >= plan.candidates.length) return;
        const now = Date.now();
        let hopeless = true;
        for (const node of active.keys()) {
          const silent = silentForMs(node, now);
          if (silent >= plan.stuckAfterMs && !plan.isEjected(node)) plan.onStuck(node);
          if (silent < 2 * plan.lateAfterMs && !plan.isEjected(node)) hopeless = false;
        }
        // A budgeted copy goes only to a node in rotation; when the attempts running are hopeless,
        // any next candidate is better.
        if (hopeless || (!plan.isEjected(plan.candidates[next]) && plan.mayHedge())) launch();
        else arm();
      }, plan.lateAfterMs);
      timer.unref();
    };

    if (plan.signal.aborted) return reject(new CancelledError('the caller cancelled the call'));
    plan.signal.addEventListener('abort', onAbort, { once: true });
    if (!launch()) finish(() => reject(plan.exhausted(undefined)));
  });
}
