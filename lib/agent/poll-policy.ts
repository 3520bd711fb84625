import type { Logger } from '../log/index.js';
import { Backoff, PROXY_BACKOFF } from '../util/backoff.js';
import { coerceError } from '../util/errors.js';
import { isConnectionCut } from './api.js';
import type { AgentMetrics } from './metrics.js';

/** Options of the poll policy. */
export interface PollPolicyOptions {
  /** The configured long-poll hold (`proxy.waitMs`). */
  waitMs: number;
  /** Backoff after a failed poll. Default PROXY_BACKOFF: 1 s → 10 s, ×2, every delay in [ceiling, ceiling × 1.15]. */
  backoff?: Backoff;
  /** A reset or EOF after at least this hold is an idle cut (a normal end), not a failure. Default 2 000 ms. */
  minCutHoldMs?: number;
  /** Cuts in a row at about the same hold after which the hold is shortened below it. Default 3. */
  cutsToAdapt?: number;
}

/** What ended a poll that brought no answer, and how long to wait before the next one. */
export interface PollFailure {
  /** An idle cut (re-poll at once, not counted into the backoff) rather than a failure. */
  cut: boolean;
  delayMs: number;
}

/** Codes that need a human (logged as errors); everything else is an outage, expected now and then. */
const NEEDS_A_HUMAN = new Set(['unauthorized', 'forbidden', 'proxy_error', 'tls_error', 'too_large']);
/** Below this a poll answered "at once" (the anti-spin guard). */
const INSTANT_MS = 50;

/**
 * Decides, for the lease loop, how long each poll holds and what happens
 * after it ends:
 *
 * - The first poll asks for no hold (`waitMs: 0`): a quick first exchange, so
 *   that `/readyz` turns 200 within moments of start instead of after a whole
 *   idle poll; the next ones hold for `waitMs`.
 * - A poll that ends in a reset or EOF after it was held at least
 *   `minCutHoldMs` was cut by something on the path that drops idle
 *   connections (squid's `read_timeout`, a firewall): a normal end. The loop
 *   polls again at once, it is logged at debug and not counted into the
 *   backoff. When `cutsToAdapt` polls in a row are cut at about the same hold,
 *   the hold is shortened below it (it never grows back until a restart: the
 *   path does not change under a running agent) and ONE warning says so and
 *   what to configure.
 * - Any other failure backs off (PROXY_BACKOFF, Retry-After honoured up to
 *   5 min); an answer resets the backoff.
 */
export class PollPolicy {
  private readonly backoff: Backoff;
  private readonly minCutHoldMs: number;
  private readonly cutsToAdapt: number;
  private effectiveWaitMs: number;
  private first = true;
  /** Holds of the latest polls in a row that were cut. */
  private cuts: number[] = [];

  constructor(
    private readonly deps: { log: Logger; metrics?: AgentMetrics },
    private readonly opts: PollPolicyOptions,
  ) {
    this.backoff = opts.backoff ?? new Backoff(PROXY_BACKOFF);
    this.minCutHoldMs = opts.minCutHoldMs ?? 2000;
    this.cutsToAdapt = Math.max(1, opts.cutsToAdapt ?? 3);
    this.effectiveWaitMs = opts.waitMs;
  }

  /** The hold in use now (the configured one, or shorter after repeated cuts). */
  get waitMs(): number {
    return this.effectiveWaitMs;
  }

  /** Consecutive failed polls. */
  get failures(): number {
    return this.backoff.attempts;
  }

  /** The hold to ask for in the next poll. */
  nextWaitMs(): number {
    if (!this.first) return this.effectiveWaitMs;
    this.first = false;
    return 0;
  }

  /**
   * A poll was answered after `heldMs`, asking for `askedWaitMs`, with
   * `accepted` jobs taken and `refused` given back. Returns how long to wait
   * before the next poll: 0, or a pause when the answer could not be used.
   */
  answered(heldMs: number, askedWaitMs: number, accepted: number, refused: number): number {
    this.deps.metrics?.polls.inc({ outcome: 'ok' });
    // A hold that went past the cut point proves the path no longer cuts there.
    if (this.cuts.length > 0 && heldMs >= Math.min(...this.cuts)) this.cuts = [];
    if (accepted === 0 && refused > 0) {
      // Only jobs we cannot take: re-polling at once would trade them back and forth.
      const delayMs = this.backoff.next();
      this.deps.metrics?.backoffs.inc({ call: 'lease' });
      this.deps.log.warn('every job of a lease answer was refused; polling again later', { refused, retryInMs: delayMs });
      return delayMs;
    }
    if (this.backoff.attempts > 0) this.deps.log.info('integration-proxy reachable again', { failures: this.backoff.attempts });
    this.backoff.reset();
    // A proxy that answers empty at once must not turn this into a hot loop.
    if (accepted === 0 && heldMs < INSTANT_MS && askedWaitMs >= 1000) return 1000;
    return 0;
  }

  /** A poll failed after `heldMs`: classifies the failure, logs it, and says how long to wait. */
  failed(err: unknown, heldMs: number): PollFailure {
    const e = coerceError(err);
    if (heldMs >= this.minCutHoldMs && isConnectionCut(e)) {
      this.deps.metrics?.polls.inc({ outcome: 'cut' });
      this.deps.log.debug('long poll cut by the network; polling again', { heldMs: Math.round(heldMs), error: e.message });
      // The poll was held, so it reached the proxy: the proxy is up.
      this.backoff.reset();
      this.noteCut(heldMs);
      return { cut: true, delayMs: 0 };
    }
    this.cuts = [];
    this.deps.metrics?.polls.inc({ outcome: 'error' });
    const delayMs = this.backoff.next(e.retryAfterMs);
    this.deps.metrics?.backoffs.inc({ call: 'lease' });
    const fields = { code: e.code, error: e.message, retryInMs: delayMs, failures: this.backoff.attempts };
    if (NEEDS_A_HUMAN.has(e.code)) this.deps.log.error('lease request failed', fields);
    else this.deps.log.warn('lease request failed', fields);
    return { cut: false, delayMs };
  }

  private noteCut(heldMs: number): void {
    this.cuts.push(heldMs);
    if (this.cuts.length > this.cutsToAdapt) this.cuts.shift();
    if (this.cuts.length < this.cutsToAdapt) return;
    const lo = Math.min(...this.cuts);
    const hi = Math.max(...this.cuts);
    // "About the same hold": within 20 % (at least 1.5 s, squid checks its timeouts once a second).
    if (hi - lo > Math.max(1500, lo * 0.2)) return;
    // Below the cut by 20 % (at least 2 s), in whole seconds, never under 1 s.
    const shorterMs = Math.max(1000, Math.floor((lo - Math.max(2000, lo * 0.2)) / 1000) * 1000);
    this.cuts = [];
    if (shorterMs >= this.effectiveWaitMs) return;
    const fromMs = this.effectiveWaitMs;
    this.effectiveWaitMs = shorterMs;
    this.deps.log.warn(
      `long polls are cut after about ${Math.round(lo / 1000)} s without traffic (an idle timeout in a forward proxy or firewall); ` +
        `poll wait shortened from ${fromMs} ms to ${shorterMs} ms. Set proxy.waitMs (AGENT_WAIT_MS) to ${shorterMs} or less, or raise that idle timeout`,
      { cutAfterMs: Math.round(lo), waitMs: shorterMs, configuredWaitMs: this.opts.waitMs },
    );
  }
}
