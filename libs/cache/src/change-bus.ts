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
  /**
   * Whether events are being received right now. While it is false events may
   * be missed, so a cache that relies on them must not serve from memory.
   */
  readonly live: boolean;
  /** Calls `listener` whenever {@link live} changes; returns a function that unsubscribes. */
  onLiveChange(listener: (live: boolean) => void): () => void;
  shutdown(): Promise<void>;
}

/** The Redis channel change events are published on. */
export const CHANGE_CHANNEL = 'maas:model-changes';

/** {@link ChangeBus} within one process. */
export class MemoryChangeBus implements ChangeBus {
  private readonly emitter = new EventEmitter().setMaxListeners(0);
  /** Nothing can be missed within one process. */
  readonly live = true;

  async publish(event: ModelChangeEvent): Promise<void> {
    this.emitter.emit('change', event);
  }

  onLiveChange(): () => void {
    return () => undefined;
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
  private subscribed = false;

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

  /** True from the moment Redis confirmed the subscription until the connection drops. */
  get live(): boolean {
    return this.subscribed;
  }

  onLiveChange(listener: (live: boolean) => void): () => void {
    this.ensureSubscriber();
    this.emitter.on('live', listener);
    return () => this.emitter.off('live', listener);
  }

  async shutdown(): Promise<void> {
    this.setLive(false);
    this.emitter.removeAllListeners();
    this.publisher.disconnect(false);
    this.subscriber?.disconnect(false);
  }

  private ensureSubscriber(): Redis {
    if (this.subscriber) return this.subscriber;
    const sub = this.connect();
    this.subscriber = sub;
    const confirm = () =>
      sub.subscribe(this.channel).then(
        () => this.setLive(sub.status === 'ready'),
        (err: unknown) => this.noteError(err),
      );
    void confirm();
    // After a reconnect ioredis resubscribes by itself; the explicit subscribe
    // (idempotent) tells us when Redis has confirmed it, so nothing published
    // from then on can be missed.
    sub.on('ready', () => void confirm());
    sub.on('close', () => this.setLive(false));
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

  private setLive(live: boolean): void {
    if (live === this.subscribed) return;
    this.subscribed = live;
    this.emitter.emit('live', live);
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
