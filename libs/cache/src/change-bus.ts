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
  /**
   * Whether the writers heard lately all wait for near-cache lease holders
   * before acknowledging a write ({@link CacheLease}); a lease may be trusted
   * only then. False while one that does not (an older registry, during a
   * rolling upgrade) has been heard within {@link HEARTBEAT_TIMEOUT_MS}, or none has.
   */
  readonly writersAwaitLeases: boolean;
  /**
   * Resolves true once every event published before this call has been
   * delivered to the listeners; false when that cannot be known (the bus is
   * not live, or the check failed).
   */
  sync(): Promise<boolean>;
  shutdown(): Promise<void>;
}

/** The Redis channel change events are published on. */
export const CHANGE_CHANNEL = 'maas:model-changes';

/** {@link ChangeBus} within one process. */
export class MemoryChangeBus implements ChangeBus {
  private readonly emitter = new EventEmitter().setMaxListeners(0);
  /** Nothing can be missed within one process. */
  readonly live = true;
  /** No writer of another process can reach this bus. */
  readonly writersAwaitLeases = true;

  async publish(event: ModelChangeEvent): Promise<void> {
    this.emitter.emit('change', event);
  }

  onLiveChange(): () => void {
    return () => undefined;
  }

  /** Events are delivered as they are published. */
  async sync(): Promise<boolean> {
    return true;
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
  /** How often the subscriber connection is probed with PING. @default 100 */
  probeIntervalMs?: number;
  /** A probe unanswered this long marks the bus down (a hung Redis keeps its TCP connections open). @default 250 */
  probeTimeoutMs?: number;
  /** The writer's side (the registry): publish a heartbeat this often, in ms, so subscribers know it can reach them. 0: none. @default 0 */
  heartbeatMs?: number;
  /**
   * The readers' side (gateways, nodes): the bus is live only while a writer's heartbeat arrived
   * within this many ms. Redis can be fine for a reader while the writer cannot reach it (its
   * connection still coming back after a Redis restart): then events are being lost. 0: not required. @default 0
   */
  requireHeartbeatMs?: number;
  /** After being down, the bus counts as live only once it has been healthy this long. @default 0 */
  settleMs?: number;
}

/** Heartbeat interval of the registry's bus and the silence after which readers stop trusting it. */
export const HEARTBEAT_MS = 100;
export const HEARTBEAT_TIMEOUT_MS = 300;
/** How long a reader's bus must be healthy again before its memory is trusted. */
export const SETTLE_MS = 500;

/**
 * Longest a subscriber can go on believing a hung Redis is live with the
 * default probe settings (interval + timeout), plus room for a busy event
 * loop. A publisher whose event may not have gone out waits at least this
 * long before its write is acknowledged, so by then every subscriber has
 * stopped serving from memory.
 */
export const BUS_DOWN_DETECTION_MS = 500;

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
  /** When the outstanding probe was sent (0: none outstanding). */
  private probeSentAt = 0;
  private probeTimer?: NodeJS.Timeout;
  private heartbeatTimer?: NodeJS.Timeout;
  private readonly probeTimeoutMs: number;
  /** When the last heartbeat of a writer that waits for lease holders arrived, and of one that does not (epoch ms). */
  private lastLeaseHeartbeat = 0;
  private lastPlainHeartbeat = 0;
  /** When the last writer heartbeat arrived (epoch ms). */
  private lastHeartbeat = 0;
  /** The last `live` value listeners were told. */
  private toldLive = false;
  /** Since when the bus has been healthy without a break (0: it is not). */
  private upSince = 0;

  constructor(private readonly options: RedisChangeBusOptions) {
    this.channel = options.channel ?? CHANGE_CHANNEL;
    this.probeTimeoutMs = options.probeTimeoutMs ?? 250;
    this.publisher = this.connect();
    if (options.heartbeatMs) {
      this.heartbeatTimer = setInterval(() => {
        // `leases`: this writer acknowledges a write only after the near-cache lease holders (see LeaseWaiter).
        this.publisher.publish(this.channel, JSON.stringify({ heartbeat: Date.now(), leases: true })).catch((err: unknown) => this.noteError(err));
      }, options.heartbeatMs);
      this.heartbeatTimer.unref();
    }
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

  /**
   * Publishes an event. When it may not have reached the subscribers, this
   * waits until {@link BUS_DOWN_DETECTION_MS} have passed since it started:
   * by then every subscriber's probe has found Redis down and it no longer
   * serves from memory, so the write the event is about can be acknowledged.
   */
  async publish(event: ModelChangeEvent): Promise<void> {
    const started = Date.now();
    try {
      await this.publisher.publish(this.channel, JSON.stringify(ModelChangeEvent.toJSON(event)));
    } catch (err) {
      this.noteError(err);
      const left = BUS_DOWN_DETECTION_MS - (Date.now() - started);
      if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
    }
  }

  subscribe(listener: ChangeListener): () => void {
    this.ensureSubscriber();
    this.emitter.on('change', listener);
    return () => this.emitter.off('change', listener);
  }

  /**
   * True from the moment Redis confirmed the subscription until the
   * connection drops or a PING on it goes unanswered for the probe timeout:
   * a PONG proves every event Redis took before it has been received.
   */
  get live(): boolean {
    const now = Date.now();
    if (!this.healthy(now)) {
      this.upSince = 0;
      return false;
    }
    if (this.upSince === 0) this.upSince = now;
    // Resynchronise before trusting it again: commands and events Redis held during a hang or
    // a reconnect arrive in the first moments after, so memory is trusted only once they are in.
    return now - this.upSince >= (this.options.settleMs ?? 0);
  }

  get writersAwaitLeases(): boolean {
    const now = Date.now();
    return now - this.lastLeaseHeartbeat < HEARTBEAT_TIMEOUT_MS && now - this.lastPlainHeartbeat >= HEARTBEAT_TIMEOUT_MS;
  }

  /** Subscribed, answering PINGs, and (where required) hearing the writer's heartbeat. */
  private healthy(now: number): boolean {
    const required = this.options.requireHeartbeatMs ?? 0;
    return this.subscribed && (this.probeSentAt === 0 || now - this.probeSentAt < this.probeTimeoutMs) && (required === 0 || now - this.lastHeartbeat < required);
  }

  onLiveChange(listener: (live: boolean) => void): () => void {
    this.ensureSubscriber();
    this.emitter.on('live', listener);
    return () => this.emitter.off('live', listener);
  }

  /**
   * A PING on the subscriber connection: Redis answers it after every message
   * it took before it, and they are emitted (listeners run) before the PONG
   * settles.
   */
  async sync(): Promise<boolean> {
    const sub = this.subscriber;
    if (!sub || sub.status !== 'ready' || !this.live) return false;
    try {
      await sub.ping();
      return this.live;
    } catch {
      return false;
    }
  }

  async shutdown(): Promise<void> {
    clearInterval(this.probeTimer);
    clearInterval(this.heartbeatTimer);
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
    sub.on('close', () => {
      this.probeSentAt = 0;
      this.setLive(false);
    });
    this.probeTimer = setInterval(() => this.probe(sub, confirm), this.options.probeIntervalMs ?? 100);
    this.probeTimer.unref();
    sub.on('message', (channel: string, text: string) => {
      if (channel !== this.channel) return;
      try {
        const message = JSON.parse(text) as Record<string, unknown>;
        if ('heartbeat' in message) {
          this.lastHeartbeat = Date.now();
          if (message.leases === true) this.lastLeaseHeartbeat = this.lastHeartbeat;
          else this.lastPlainHeartbeat = this.lastHeartbeat;
          this.tell();
          return;
        }
        this.emitter.emit('change', ModelChangeEvent.fromJSON(message));
      } catch (err) {
        this.options.logger?.warn({ err: (err as Error).message }, 'ignored a malformed model change event');
      }
    });
    return sub;
  }

  /** One PING on the subscriber connection; an overdue one marks the bus down until a PONG comes back. */
  private probe(sub: Redis, confirm: () => Promise<void>): void {
    this.tell();
    if (sub.status !== 'ready') return;
    if (this.probeSentAt !== 0) {
      if (Date.now() - this.probeSentAt >= this.probeTimeoutMs) this.setLive(false);
      return;
    }
    this.probeSentAt = Date.now();
    sub.ping().then(
      () => {
        this.probeSentAt = 0;
        // Back from a hang: subscribe again (idempotent) so `live` turns true only once Redis confirms.
        if (!this.subscribed) void confirm();
      },
      () => {
        // The connection failed under it; 'close' and the reconnect take over.
        this.probeSentAt = 0;
      },
    );
  }

  private setLive(live: boolean): void {
    this.subscribed = live;
    this.tell();
  }

  /** Tells listeners when {@link live} has changed since they were last told. */
  private tell(): void {
    const live = this.live;
    if (live === this.toldLive) return;
    this.toldLive = live;
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
