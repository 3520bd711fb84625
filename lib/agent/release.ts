import type { Logger } from '../log/index.js';
import type { LeaseRef, ReleaseRequest, ReleaseResponse } from '../protocol/schemas.js';
import { Backoff } from '../util/backoff.js';
import { timeoutSignal, type Clock } from '../util/clock.js';
import { toWireError } from '../util/errors.js';
import { retry } from '../util/retry.js';

/** The part of the protocol client the release uses. */
export interface ReleaseApi {
  release(body: ReleaseRequest, signal?: AbortSignal): Promise<ReleaseResponse>;
}

/** Options of `releaseLeases`. */
export interface ReleaseOptions {
  agentId: string;
  /** How long the retries may go on, from the first attempt. Default 5 000 ms (see agent.ts RELEASE_WINDOW_MS). */
  windowMs?: number;
  /** Longest wait for one answer, so that a hung call leaves time to retry. Default 2 000 ms. */
  attemptTimeoutMs?: number;
  /** Between failed attempts. Default 100 ms → 1 s, ×2, full jitter: a proxy away for a moment is tried several times. */
  backoff?: Backoff;
  /** Ends the retries early (with what is not yet released left to expire). */
  signal?: AbortSignal;
}

/**
 * Gives leases back at shutdown (per 1 000), spending no attempt, retrying a
 * failed call with backoff until `windowMs` ends. What is still not released
 * then expires on the proxy after its TTL, and its job runs again elsewhere
 * with one attempt spent. Returns how many the proxy released. Never throws.
 */
export async function releaseLeases(
  deps: { api: ReleaseApi; clock: Clock; log: Logger },
  leases: LeaseRef[],
  opts: ReleaseOptions,
): Promise<number> {
  const { clock, log } = deps;
  const windowMs = opts.windowMs ?? 5000;
  const window = timeoutSignal(clock, windowMs, 'releasing leases');
  const signal = opts.signal ? AbortSignal.any([opts.signal, window.signal]) : window.signal;
  const backoff = opts.backoff ?? new Backoff({ baseMs: 100, capMs: 1000 });
  let released = 0;
  try {
    for (let i = 0; i < leases.length; i += 1000) {
      const chunk = leases.slice(i, i + 1000);
      let tried = 0;
      let logged = 0;
      try {
        const n = await retry(
          async (attempt) => {
            tried = attempt;
            const attemptTimeout = timeoutSignal(clock, opts.attemptTimeoutMs ?? 2000, 'the release call');
            try {
              const res = await deps.api.release({ agentId: opts.agentId, leases: chunk }, AbortSignal.any([signal, attemptTimeout.signal]));
              const n = res.leases.filter((l) => l.status === 'released').length;
              log.info('released unfinished jobs', { jobs: chunk.length, released: n, attempt });
              return n;
            } finally {
              attemptTimeout.clear();
            }
          },
          {
            clock,
            backoff,
            signal,
            // Any failure is worth another try while the window lasts: the alternative is a spent attempt.
            shouldRetry: () => true,
            // A Retry-After beyond the window only means "not in time": wait for the window's end, never overflow a timer.
            maxDelayMs: windowMs,
            onRetry: (e, retryInMs, attempt) => {
              logged = attempt;
              log.warn('release failed', { code: e.code, error: e.message, attempt, jobs: chunk.length, retryInMs });
            },
          },
        );
        released += n;
      } catch (err) {
        // The window ended: during a call (said once here) or during a wait (already said). The rest expires after its TTL.
        if (logged < tried) {
          const e = toWireError(err);
          log.warn('release failed', { code: e.code, error: e.message, attempt: tried, jobs: chunk.length, retryInMs: undefined });
        }
        return released;
      }
    }
    return released;
  } finally {
    window.clear();
  }
}
