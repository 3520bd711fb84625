import type { Logger } from '../log/index.js';
import type { LeaseRef, ReleaseRequest, ReleaseResponse } from '../protocol/schemas.js';
import { Backoff } from '../util/backoff.js';
import { sleep, timeoutSignal, type Clock } from '../util/clock.js';
import { toWireError } from '../util/errors.js';

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
      for (let attempt = 1; ; attempt++) {
        const attemptTimeout = timeoutSignal(clock, opts.attemptTimeoutMs ?? 2000, 'the release call');
        try {
          const res = await deps.api.release({ agentId: opts.agentId, leases: chunk }, AbortSignal.any([signal, attemptTimeout.signal]));
          const n = res.leases.filter((l) => l.status === 'released').length;
          released += n;
          log.info('released unfinished jobs', { jobs: chunk.length, released: n, attempt });
          backoff.reset();
          break;
        } catch (err) {
          const e = toWireError(err);
          // A Retry-After beyond the window only means "not in time": wait for the window's end, never overflow a timer.
          const retryInMs = signal.aborted ? undefined : Math.min(backoff.next(toRetryAfter(err)), windowMs);
          // Not released yet: retried until the window ends; after that the leases expire after their TTL.
          log.warn('release failed', { code: e.code, error: e.message, attempt, jobs: chunk.length, retryInMs });
          if (retryInMs === undefined) return released;
          try {
            await sleep(clock, retryInMs, signal);
          } catch {
            return released;
          }
        } finally {
          attemptTimeout.clear();
        }
      }
    }
    return released;
  } finally {
    window.clear();
  }
}

function toRetryAfter(err: unknown): number | undefined {
  const ms = (err as { retryAfterMs?: unknown }).retryAfterMs;
  return typeof ms === 'number' ? ms : undefined;
}
