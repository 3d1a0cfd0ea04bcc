/**
 * A read-through cache of registry metadata, grouped per model so that one
 * write invalidates everything cached about that model at once.
 *
 * Each model has a generation. Readers remember the generation they saw on a
 * miss and store what they loaded only if it is unchanged, so a value loaded
 * before a write can never be stored after that write's invalidation.
 */
export interface MetadataCache {
  /** One cached entry of a model, and the model's current generation. */
  get(model: string, field: string): Promise<CacheRead>;
  /** Stores an entry if the model's generation is still `generation`. */
  set(model: string, field: string, value: string, generation: string): Promise<void>;
  /** Drops every entry of the model and moves its generation on. */
  invalidate(model: string): Promise<void>;
  /**
   * The model's generation now (`''` when it has none), or undefined when the
   * cache cannot tell (unreachable). Generations are never reused, so an equal
   * one means no write since.
   */
  generation(model: string): Promise<string | undefined>;
  /** Counters for metrics and tests. */
  readonly stats: CacheStats;
  shutdown(): Promise<void>;
}

/** Result of {@link MetadataCache.get}. */
export interface CacheRead {
  value?: string;
  /** Opaque generation token; `''` when the model has none yet. */
  generation: string;
}

/** Running counts of cache outcomes. */
export interface CacheStats {
  hits: number;
  misses: number;
  /** Reads or writes that failed because the backend was unreachable. */
  errors: number;
}

/** Options common to cache implementations. */
export interface MetadataCacheOptions {
  /** Seconds an entry lives; bounds staleness if an invalidation is ever lost. @default 300 */
  ttlSeconds?: number;
}
