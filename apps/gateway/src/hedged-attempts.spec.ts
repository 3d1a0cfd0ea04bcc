import { status } from '@grpc/grpc-js';
import type { NodeHandle } from '@maas/inference-client';
import { runAttempts, type AttemptPlan } from './hedged-attempts';

const node = (id: string): NodeHandle => ({ instance: { id, address: id, tags: [], meta: {} } as never, client: undefined as never, inFlight: 0, ejectedUntil: 0, silentSince: 0 });
const grpcError = (code: status) => Object.assign(new Error(status[code]), { code, details: status[code] });

/** A node that answers after `ms` (never, when undefined), or fails with `fail`. */
type Behaviour = { ms?: number; fail?: status };

function plan(nodes: NodeHandle[], behaviour: Record<string, Behaviour>, overrides: Partial<AttemptPlan<string>> = {}) {
  const sent: string[] = [];
  const cancelled: string[] = [];
  const stuck: string[] = [];
  const p: AttemptPlan<string> = {
    candidates: nodes,
    signal: new AbortController().signal,
    lateAfterMs: 20,
    stuckAfterMs: 60,
    send: (n, signal) =>
      new Promise((resolve, reject) => {
        sent.push(n.instance.id);
        const b = behaviour[n.instance.id];
        const timer = b.ms === undefined ? undefined : setTimeout(() => (b.fail !== undefined ? reject(grpcError(b.fail)) : resolve(n.instance.id)), b.ms);
        signal.addEventListener('abort', () => {
          clearTimeout(timer);
          cancelled.push(n.instance.id);
          reject(grpcError(status.CANCELLED));
        });
      }),
    mayHedge: () => true,
    retryElsewhere: (err) => [status.UNAVAILABLE, status.CANCELLED].includes((err as { code: status }).code),
    isEjected: (n) => n.ejectedUntil > Date.now(),
    onSuccess: () => undefined,
    onLateAnswer: () => undefined,
    onFailure: () => undefined,
    onStuck: (n) => {
      stuck.push(n.instance.id);
      n.ejectedUntil = Date.now() + 10_000;
    },
    exhausted: () => new Error('exhausted'),
    ...overrides,
  };
  return { p, sent, cancelled, stuck };
}

describe('runAttempts', () => {
  it('answers from the first node without hedging when it is prompt', async () => {
    const [a, b] = [node('a'), node('b')];
    const { p, sent } = plan([a, b], { a: { ms: 1 }, b: { ms: 1 } });
    await expect(runAttempts(p)).resolves.toBe('a');
    expect(sent).toEqual(['a']);
    expect(a.inFlight + b.inFlight).toBe(0);
  });

  it('sends a copy to the next node when the first is late, takes the first answer, and cancels the other once it is stuck', async () => {
    const [a, b] = [node('a'), node('b')];
    const { p, sent, cancelled } = plan([a, b], { a: { ms: 500 }, b: { ms: 5 } });
    await expect(runAttempts(p)).resolves.toBe('b');
    expect(sent).toEqual(['a', 'b']);
    expect(cancelled).toEqual([]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(cancelled).toEqual(['a']);
    expect(a.inFlight).toBe(0);
  });

  it('learns what a slow node really takes when its answer comes after the race was won', async () => {
    const [a, b] = [node('a'), node('b')];
    const late: number[] = [];
    const { p } = plan([a, b], { a: { ms: 40 }, b: { ms: 5 } }, { onLateAnswer: (_n, ms) => late.push(ms) });
    await expect(runAttempts(p)).resolves.toBe('b');
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(late).toHaveLength(1);
    expect(late[0]).toBeGreaterThanOrEqual(35);
  });

  it('reports a node that keeps calls and answers none as stuck, and hedges past the budget', async () => {
    const [frozen, ok] = [node('frozen'), node('ok')];
    const { p, stuck } = plan([frozen, ok], { frozen: {}, ok: { ms: 5 } }, { mayHedge: () => false });
    frozen.silentSince = Date.now() - 1000; // earlier calls are still unanswered
    await expect(runAttempts(p)).resolves.toBe('ok');
    expect(stuck).toEqual(['frozen']);
  });

  it('moves on at once after a retryable failure, and never after a deterministic one', async () => {
    const [a, b] = [node('a'), node('b')];
    const retried = plan([a, b], { a: { ms: 1, fail: status.UNAVAILABLE }, b: { ms: 1 } }, { lateAfterMs: 10_000 });
    await expect(runAttempts(retried.p)).resolves.toBe('b');
    const refused = plan([a, b], { a: { ms: 1, fail: status.INVALID_ARGUMENT }, b: { ms: 1 } }, { lateAfterMs: 10_000 });
    await expect(runAttempts(refused.p)).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(refused.sent).toEqual(['a']);
  });

  it('says every node failed when each one did', async () => {
    const { p } = plan([node('a'), node('b')], { a: { ms: 1, fail: status.UNAVAILABLE }, b: { ms: 1, fail: status.UNAVAILABLE } });
    await expect(runAttempts(p)).rejects.toThrow('exhausted');
  });
});
