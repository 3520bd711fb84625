import type pg from 'pg';
import type { Clock, TimerHandle } from '../util/clock.js';
import { fullJitterDelayMs } from '../util/backoff.js';
import type { Logger } from '../log/index.js';
import { NOTIFY_CHANNEL, TOKENS_CHANNEL, parseNotifyPayload } from './store/events.js';

export interface ListenerDeps {
  clock: Clock;
  log: Logger;
  /** A new, unconnected PostgreSQL client (a dedicated connection: LISTEN holds it). */
  connect(): pg.Client;
  /** This replica's id: its own notifications are already handled locally. */
  replicaId: string;
  /** Wakes local waiters. */
  available(pool: string, resources: Array<string | null>): void;
  /** A token was revoked (by any process): drop cached tokens. */
  tokensChanged?(): void;
}

/**
 * LISTENs for other replicas' NOTIFYs on one dedicated connection and
 * reconnects with full-jitter backoff when it drops; the waiters' periodic
 * re-check covers what is missed meanwhile.
 */
export class ReplicaListener {
  private client: pg.Client | undefined;
  private stopped = false;
  private failures = 0;
  private retryTimer: TimerHandle | undefined;

  constructor(private readonly deps: ListenerDeps) {}

  async start(): Promise<void> {
    this.stopped = false;
    await this.connect();
  }

  private async connect(): Promise<void> {
    const client = this.deps.connect();
    this.client = client;
    client.on('notification', (msg) => {
      if (msg.channel === TOKENS_CHANNEL) return this.deps.tokensChanged?.();
      const n = msg.channel === NOTIFY_CHANNEL && msg.payload ? parseNotifyPayload(msg.payload) : null;
      if (n && n.replicaId !== this.deps.replicaId) this.deps.available(n.pool, n.resources);
    });
    client.on('error', (err) => {
      this.deps.log.warn('replica listener: connection error', { err });
      this.reconnectLater(client);
    });
    client.on('end', () => this.reconnectLater(client));
    await client.connect();
    await client.query(`LISTEN ${NOTIFY_CHANNEL}`);
    if (this.deps.tokensChanged) await client.query(`LISTEN ${TOKENS_CHANNEL}`);
    this.failures = 0;
  }

  private reconnectLater(client: pg.Client): void {
    if (this.stopped || this.client !== client) return;
    this.client = undefined;
    client.end().catch(() => {
      // The connection failed already; how its close fails says nothing more.
    });
    const delayMs = fullJitterDelayMs(++this.failures, { baseMs: 500, capMs: 10_000 });
    this.retryTimer = this.deps.clock.setTimeout(() => {
      this.connect().catch((err: unknown) => {
        this.deps.log.warn('replica listener: reconnect failed', { err });
        if (this.client) this.reconnectLater(this.client);
      });
    }, delayMs);
  }

  /** Closes the connection. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) this.deps.clock.clearTimeout(this.retryTimer);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => {
      // Stopping: a connection that cannot close cleanly is gone all the same.
    });
  }
}
