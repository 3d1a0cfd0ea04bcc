import type { ChangeBus } from '@maas/cache';
import type { Logger } from 'pino';
import type { ModelManager } from './model-manager';

/** Options of {@link startReconciler}. */
export interface ReconcilerOptions {
  /** How often every loaded version is checked against the registry. @default 5000 */
  intervalMs?: number;
  /** Registry change events: a model's loaded versions are checked as soon as it changes. */
  bus?: ChangeBus;
  logger?: Logger;
}

/** A running {@link startReconciler}. */
export interface Reconciler {
  /** Checks every loaded version now; resolves to how many were unloaded. */
  runOnce(): Promise<number>;
  shutdown(): Promise<void>;
}

/**
 * Keeps a node's loaded versions those the registry still holds: versions of
 * deleted models, archived versions and versions whose artifact was replaced
 * (a model deleted and created again) are unloaded. Change events make it
 * prompt where Redis is configured; a periodic pass covers nodes without Redis
 * and events lost while the bus was down, and a pass runs each time the bus
 * comes back.
 */
export function startReconciler(manager: ModelManager, options: ReconcilerOptions = {}): Reconciler {
  const { bus, logger } = options;
  let running: Promise<number> | undefined;
  const pass = (model?: string): Promise<number> => {
    return manager.reconcile(model).catch((err: unknown) => {
      logger?.warn({ err: (err as Error).message, model }, 'checking loaded versions against the registry failed; will retry');
      return 0;
    });
  };
  const runOnce = (): Promise<number> => {
    running ??= pass().finally(() => (running = undefined));
    return running;
  };
  const timer = setInterval(() => void runOnce(), options.intervalMs ?? 5000);
  timer.unref();
  const unsubscribe = bus?.subscribe((event) => {
    if (manager.list().some((m) => m.version.model === event.model)) void pass(event.model);
  });
  const unwatch = bus?.onLiveChange((live) => {
    if (live) void runOnce();
  });
  return {
    runOnce,
    async shutdown() {
      clearInterval(timer);
      unsubscribe?.();
      unwatch?.();
      await running;
      await bus?.shutdown();
    },
  };
}
