import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { ModelChangeEvent } from '@maas/proto';

/** Listener of model change events. */
export type ChangeListener = (event: ModelChangeEvent) => void;

/**
 * Carries registry writes to whoever caches what they changed (gateways,
 * nodes). Delivery is best effort: caches also expire, so a lost event delays
 * a change by at most the cache TTL, never loses it.
 */
export interface ChangeBus {
  publish(event: ModelChangeEvent): Promise<void>;
  /** Returns a function that unsubscribes. */
  subscribe(listener: ChangeListener): () => void;
  shutdown(): Promise<void>;
}

/** The Redis channel change events are published on. */
export const CHANGE_CHANNEL = 'maas:model-changes';

/** {@link ChangeBus} within one process. */
export class MemoryChangeBus implements ChangeBus {
  private readonly emitter = new EventEmitter().setMaxListeners(0);

  async publish(event: ModelChangeEvent): Promise<void> {
    this.emitter.emit('change', event);
  }

  subscribe(listener: ChangeListener): () => void {
    this.emitter.on('change', listener);
    return () => this.emitter.off('change', listener);
  }

  async shutdown(): Promise<void> {
    this.emitter.removeAllListeners();
  }
}

/** Options of {@link RedisChangeBus}. */
export interface RedisChangeBusOptions {
  url: string;
  /** @default {@link CHANGE_CHANNEL} */
  channel?: string;
  logger?: Logger;
}

/**
 * {@link ChangeBus} over Redis pub/sub, JSON-encoded events. The subscriber
 * connection is opened on the first `subscribe` and resubscribes by itself
 * after Redis comes back.
 */
export class RedisChangeBus implements ChangeBus {
  private readonly channel: string;
  private readonly publisher: Redis;
  private subscriber?: Redis;
  private readonly emitter = new EventEmitter().setMaxListeners(0);
  private lastErrorLog = 0;

  constructor(private readonly options: RedisChangeBusOptions) {
    this.channel = options.channel ?? CHANGE_CHANNEL;
    this.publisher = this.connect();
  }

  /** Resolves once the subscriber connection is subscribed (for tests and start-up ordering). */
  async ready(): Promise<void> {
    const sub = this.ensureSubscriber();
    if (sub.status === 'ready') {
      await sub.subscribe(this.channel);
      return;
    }
    await new Promise<void>((resolve) => sub.once('ready', () => resolve()));
    await sub.subscribe(this.channel);
  }

  async publish(event: ModelChangeEvent): Promise<void> {
    try {
      await this.publisher.publish(this.channel, JSON.stringify(ModelChangeEvent.toJSON(event)));
    } catch (err) {
      this.noteError(err);
    }
  }

  subscribe(listener: ChangeListener): () => void {
    this.ensureSubscriber();
    this.emitter.on('change', listener);
    return () => this.emitter.off('change', listener);
  }

  async shutdown(): Promise<void> {
    this.emitter.removeAllListeners();
    this.publisher.disconnect(false);
    this.subscriber?.disconnect(false);
  }

  private ensureSubscriber(): Redis {
    if (this.subscriber) return this.subscriber;
    const sub = this.connect();
    this.subscriber = sub;
    sub.subscribe(this.channel).catch((err: unknown) => this.noteError(err));
    sub.on('message', (channel: string, text: string) => {
      if (channel !== this.channel) return;
      try {
        this.emitter.emit('change', ModelChangeEvent.fromJSON(JSON.parse(text)));
      } catch (err) {
        this.options.logger?.warn({ err: (err as Error).message }, 'ignored a malformed model change event');
      }
    });
    return sub;
  }

  private connect(): Redis {
    const client = new Redis(this.options.url, {
      enableOfflineQueue: true,
      maxRetriesPerRequest: 0,
      commandTimeout: 1000,
      connectTimeout: 2000,
      autoResubscribe: true,
      retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
    });
    client.on('error', (err) => this.noteError(err));
    return client;
  }

  private noteError(err: unknown): void {
    const now = Date.now();
    if (now - this.lastErrorLog > 5000) {
      this.lastErrorLog = now;
      this.options.logger?.warn({ err: (err as Error).message }, 'redis change bus unavailable; caches rely on expiry meanwhile');
    }
  }
}
