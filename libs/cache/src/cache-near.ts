import type { CacheLease } from './cache-lease';
import type { ChangeBus } from './change-bus';
import type { CacheRead, CacheStats, MetadataCache } from './metadata-cache';

/** Options of {@link NearMetadataCache}. */
export interface NearCacheOptions {
  /** Longest an entry is served from memory, in ms; bounds staleness should an event ever be lost. @default 10000 */
  ttlMs?: number;
  /** Most entries kept; the oldest go first. @default 10000 */
  maxEntries?: number;
  /**
   * A lease on this memory ({@link CacheLease}, renewing): while
   * it holds, hits are answered without reading the model's generation, and
   * every write this cache is told of is acknowledged to its writer once
   * dropped. Without it every hit reads the generation.
   */
  lease?: CacheLease;
}

interface NearEntry {
  value: string;
  /** The shared cache's generation of the model when the value was read or stored there. */
  generation: string;
  expires: number;
}

/** Separates the near cache's epoch from the shared cache's generation in the token readers carry. */
const SEP = '\u0000';
/** What a hit answered under a lease is: current. */
const CURRENT = Promise.resolve(true);

/**
 * A process-local layer over a shared {@link MetadataCache} (Redis), so that a
 * hot read costs a map lookup instead of a network round trip.
 *
 * Before answering from memory it asks the shared cache for the model's
 * generation (one small read instead of the entry): every registry write
 * gives the model a new, never reused generation before it is acknowledged,
 * so a value whose generation is unchanged is current, and any other is read
 * again. Change events cannot give that guarantee on their own: Redis may
 * still hold an event in its output buffer when the writer's acknowledgement
 * has already reached a client and its next read has reached us (seen under
 * CPU contention). The events still drop a changed model's entries early,
 * and while the bus is (or was) disconnected the layer is bypassed and then
 * emptied. Entries also expire after `ttlMs`. With a lease (see
 * {@link CacheLease}) the generation read is skipped while the lease holds:
 * then no write is acknowledged before this process has dropped what it
 * changed. Like the shared cache, a value
 * loaded before an invalidation is never stored after it: readers carry the
 * model's local epoch, and a store with an outdated epoch is ignored.
 */
export class NearMetadataCache implements MetadataCache {
  readonly stats: CacheStats & { nearHits: number };
  /** Entries by model, then field. */
  private readonly models = new Map<string, Map<string, NearEntry>>();
  private count = 0;
  private readonly epochs = new Map<string, number>();
  /** Moves on whenever the whole layer is emptied, so in-flight loads are not stored. */
  private globalEpoch = 0;
  private readonly ttlMs: number;
  private readonly maxEntries: number;
  private readonly unsubscribe: Array<() => void>;
  /** Per model, the generation read not yet sent, shared by the hits waiting for it. */
  private readonly checks = new Map<string, Promise<string | undefined>>();
  /** The lease on this memory, if it holds one. */
  readonly lease?: CacheLease;

  constructor(
    readonly shared: MetadataCache,
    private readonly bus: ChangeBus,
    options: NearCacheOptions = {},
  ) {
    this.ttlMs = options.ttlMs ?? 10_000;
    this.maxEntries = options.maxEntries ?? 10_000;
    this.lease = options.lease;
    const sharedStats = shared.stats;
    this.stats = {
      nearHits: 0,
      get hits() {
        return sharedStats.hits + this.nearHits;
      },
      get misses() {
        return sharedStats.misses;
      },
      get errors() {
        return sharedStats.errors;
      },
    };
    this.unsubscribe = [
      bus.subscribe((event) => {
        this.forget(event.model);
        // Only once dropped: the writer acknowledges its write after this.
        this.lease?.ack(event.writeId);
      }),
      bus.onLiveChange((live) => {
        this.lease?.lapse(live);
        this.clear();
      }),
    ];
  }

  /** Entries held in memory now. */
  get size(): number {
    return this.count;
  }

  async get(model: string, field: string): Promise<CacheRead> {
    const held = this.peek(model, field);
    if (held && (await held.current)) return { value: held.value, generation: '' };
    const fields = this.models.get(model);
    if (fields?.delete(field)) this.count -= 1;
    const token = this.tokenOf(model);
    const read = await this.shared.get(model, field);
    if (read.value !== undefined) this.remember(model, field, read.value, token, read.generation);
    return { value: read.value, generation: `${token}${SEP}${read.generation}` };
  }

  /**
   * A value held in memory, to start work on before it is confirmed: `current`
   * settles once the model's generation has been read by a request sent after
   * this call, true when the value was current then (at once while the lease
   * holds). Nothing may be answered from the value before `current` is true;
   * when it is false the entry is dropped. Undefined when memory holds no
   * usable entry.
   */
  peek(model: string, field: string): { value: string; current: Promise<boolean> } | undefined {
    const entry = this.models.get(model)?.get(field);
    if (!entry || !this.bus.live || entry.expires <= Date.now()) return undefined;
    if (this.lease?.trusted()) {
      this.stats.nearHits += 1;
      return { value: entry.value, current: CURRENT };
    }
    const token = this.tokenOf(model);
    const current = this.generationAfterNow(model).then((generation) => {
      if (generation === entry.generation && token === this.tokenOf(model) && this.bus.live) {
        this.stats.nearHits += 1;
        return true;
      }
      const fields = this.models.get(model);
      if (fields?.get(field) === entry) {
        fields.delete(field);
        this.count -= 1;
      }
      return false;
    });
    return { value: entry.value, current };
  }

  async set(model: string, field: string, value: string, generation: string): Promise<void> {
    const at = generation.indexOf(SEP);
    if (at < 0) return; // not a token of this layer (a read served from memory never leads to a store)
    const token = generation.slice(0, at);
    const shared = generation.slice(at + 1);
    await this.shared.set(model, field, value, shared);
    // Kept under the generation the value was loaded at: if a write moved it on meanwhile, the next read drops it.
    this.remember(model, field, value, token, shared);
  }

  async invalidate(model: string): Promise<void> {
    this.forget(model);
    await this.shared.invalidate(model);
    // A read that raced the shared invalidation may have refilled memory.
    this.forget(model);
  }

  /** Drops what this process holds about a model (a change event or a local write). */
  forget(model: string): void {
    this.epochs.set(model, (this.epochs.get(model) ?? 0) + 1);
    this.count -= this.models.get(model)?.size ?? 0;
    this.models.delete(model);
  }

  async shutdown(): Promise<void> {
    this.unsubscribe.forEach((off) => off());
    await this.lease?.stop();
    this.clear();
    await this.shared.shutdown();
  }

  private clear(): void {
    this.globalEpoch += 1;
    this.epochs.clear();
    this.models.clear();
    this.count = 0;
  }

  private tokenOf(model: string): string {
    return `${this.globalEpoch}.${this.epochs.get(model) ?? 0}`;
  }

  async generation(model: string): Promise<string | undefined> {
    return this.shared.generation(model);
  }

  /**
   * The model's generation as read by a request sent after this call: reads
   * arriving before it goes out share it (one Redis command for all the hits
   * of a busy model in one turn of the event loop), and one made later waits
   * for the next, so no hit is ever checked by a read older than itself.
   */
  private generationAfterNow(model: string): Promise<string | undefined> {
    let check = this.checks.get(model);
    if (!check) {
      check = new Promise((resolve) => {
        setImmediate(() => {
          this.checks.delete(model);
          this.shared.generation(model).then(resolve, () => resolve(undefined));
        });
      });
      this.checks.set(model, check);
    }
    return check;
  }

  private remember(model: string, field: string, value: string, token: string, generation: string): void {
    if (!this.bus.live || token !== this.tokenOf(model)) return;
    let fields = this.models.get(model);
    if (!fields?.has(field)) {
      // Full: make room by dropping the model held longest, all its fields at once.
      if (this.count >= this.maxEntries) this.forget(this.models.keys().next().value!);
      fields = this.models.get(model);
      if (!fields) this.models.set(model, (fields = new Map()));
      this.count += 1;
    }
    fields.set(field, { value, generation, expires: Date.now() + this.ttlMs });
  }
}
