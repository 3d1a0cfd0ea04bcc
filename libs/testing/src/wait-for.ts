/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long. @default 10000 */
  timeoutMs?: number;
  /** Pause between checks. @default 20 */
  intervalMs?: number;
  /** Said in the error when the deadline passes. */
  description?: string;
}

/**
 * Polls `check` until it returns a value other than `undefined`/`false` (or stops
 * throwing), and resolves to that value. Rejects with the last failure once the
 * deadline passes. This is how tests wait for a condition; they never sleep.
 */
export async function waitFor<T>(check: () => T | Promise<T>, options: WaitForOptions = {}): Promise<Exclude<T, false | undefined>> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as Exclude<T, false | undefined>;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const what = options.description ?? 'condition';
      const why = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new Error(`timed out after ${options.timeoutMs ?? 10_000} ms waiting for ${what}${why}`, { cause: lastError });
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 20));
  }
}
