import type { CacheRead, CacheStats, MetadataCache, MetadataCacheOptions } from './metadata-cache';

interface ModelEntries {
  generation: number;
  fields: Map<string, { value: string; expires: number }>;
}

/** {@link MetadataCache} in this process's memory, for the embedded default. */
export class MemoryMetadataCache implements MetadataCache {
  readonly stats: CacheStats = { hits: 0, misses: 0, errors: 0 };
  private readonly models = new Map<string, ModelEntries>();
  private readonly ttlMs: number;

  constructor(options: MetadataCacheOptions = {}) {
    this.ttlMs = (options.ttlSeconds ?? 300) * 1000;
  }

  async get(model: string, field: string): Promise<CacheRead> {
    const entries = this.models.get(model);
    const generation = entries ? String(entries.generation) : '';
    const entry = entries?.fields.get(field);
    if (entry && entry.expires > Date.now()) {
      this.stats.hits += 1;
      return { value: entry.value, generation };
    }
    this.stats.misses += 1;
    return { generation };
  }

  async set(model: string, field: string, value: string, generation: string): Promise<void> {
    let entries = this.models.get(model);
    if ((entries ? String(entries.generation) : '') !== generation) return;
    if (!entries) {
      entries = { generation: 0, fields: new Map() };
      this.models.set(model, entries);
    }
    entries.fields.set(field, { value, expires: Date.now() + this.ttlMs });
  }

  async invalidate(model: string): Promise<void> {
    const entries = this.models.get(model);
    this.models.set(model, { generation: (entries?.generation ?? 0) + 1, fields: new Map() });
  }

  async generation(model: string): Promise<string> {
    const entries = this.models.get(model);
    return entries ? String(entries.generation) : '';
  }

  async shutdown(): Promise<void> {
    this.models.clear();
  }
}
