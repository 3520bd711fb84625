import type { Logger } from '../log/index.js';
import type { Clock, TimerHandle } from '../util/clock.js';
import type { PresenceTransition } from './store/presence.js';

/** Options of the presence log. */
export interface PresenceLogOptions {
  /** How often agents are checked for a missed contact. Default 2 000 ms. */
  intervalMs?: number;
  /** Lines per kind (stale, offline) per minute; beyond it one summary line. Default 20. */
  maxLinesPerMinute?: number;
}

/**
 * Logs at info each agent that went `stale` (missed its expected contact) or
 * `offline` (unseen for the presence window) without saying goodbye — the
 * goodbyes and joins are logged by the agent store as they happen. Rate
 * limited: a whole site losing its network is a few lines, not thousands.
 * Each replica logs what it sees (the check is a read).
 */
export class PresenceLog {
  private timer: TimerHandle | undefined;
  private sinceMs: number;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();
  private window = { startMs: 0, stale: 0, offline: 0 };

  constructor(
    private readonly deps: { clock: Clock; log: Logger; transitions: (sinceMs: number, nowMs: number, limit: number) => Promise<PresenceTransition[]> },
    private readonly opts: PresenceLogOptions = {},
  ) {
    this.sinceMs = deps.clock.now();
  }

  start(): void {
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) this.deps.clock.clearTimeout(this.timer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.setTimeout(() => {
      this.running = this.check().finally(() => this.schedule());
    }, this.opts.intervalMs ?? 2000);
  }

  /** One check: what went stale or offline since the last one. */
  async check(): Promise<void> {
    const now = this.deps.clock.now();
    const max = this.opts.maxLinesPerMinute ?? 20;
    try {
      const found = await this.deps.transitions(this.sinceMs, now, max * 2 + 1);
      this.sinceMs = now;
      if (now - this.window.startMs >= 60_000) this.window = { startMs: now, stale: 0, offline: 0 };
      let skipped = 0;
      for (const t of found) {
        if (this.window[t.status] >= max) {
          skipped++;
          continue;
        }
        this.window[t.status]++;
        this.deps.log.info(t.status === 'stale' ? 'agent stale: missed its expected contact' : 'agent offline: not seen within the presence window', {
          pool: t.pool, agentId: t.agentId, lastSeenAt: t.lastSeenAt,
        });
      }
      if (skipped) this.deps.log.info('more agents went stale or offline (log lines rate-limited)', { more: skipped });
    } catch (err) {
      this.deps.log.warn('presence check failed', { err });
    }
  }
}
