import type { HeartbeatResponse, LeasedJob } from '../protocol/schemas.js';

/**
 * Bounds on what the integration-proxy says (issue 9: its answers are input
 * like any other). Durations outside them are clamped where clamping is on the
 * safe side (a shorter lease or job timeout only makes the agent renew, fence
 * or give up earlier) and refused where it is not.
 */

/** A lease TTL below this cannot be held safely (renewal every TTL/3, fence margin): such jobs are released, not run. */
export const MIN_LEASE_TTL_MS = 1000;
/** A lease TTL above this is clamped to it (the agent renews and fences as if it were this long). */
export const MAX_LEASE_TTL_MS = 600_000;
/** A job timeout above this (the longest a job may be enqueued with, 24 h) is clamped to it; Node timers overflow past 24.8 days. */
export const MAX_JOB_TIMEOUT_MS = 24 * 3600_000;
/** The largest answer body the agent reads from the proxy (16 MiB, counted as it streams in); a larger one fails the call. */
export const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/** A leased job with its durations clamped to the bounds above (TTL below the minimum kept, for `splitLease` to refuse). */
export function boundLeasedJob(job: LeasedJob): LeasedJob {
  if (job.leaseTtlMs <= MAX_LEASE_TTL_MS && job.timeoutMs <= MAX_JOB_TIMEOUT_MS) return job;
  return { ...job, leaseTtlMs: Math.min(job.leaseTtlMs, MAX_LEASE_TTL_MS), timeoutMs: Math.min(job.timeoutMs, MAX_JOB_TIMEOUT_MS) };
}

/**
 * A heartbeat answer with each renewed TTL clamped to MAX_LEASE_TTL_MS. A TTL
 * below the minimum is kept: it only makes the lease fence sooner, which is safe.
 */
export function boundHeartbeat(res: HeartbeatResponse): HeartbeatResponse {
  if (res.leases.every((l) => l.leaseTtlMs === undefined || l.leaseTtlMs <= MAX_LEASE_TTL_MS)) return res;
  return { leases: res.leases.map((l) => (l.leaseTtlMs !== undefined && l.leaseTtlMs > MAX_LEASE_TTL_MS ? { ...l, leaseTtlMs: MAX_LEASE_TTL_MS } : l)) };
}

/** A lease answer sorted into what runs and what goes back. */
export interface SplitLease {
  /** At most `max` jobs to run, in the answer's order. */
  run: LeasedJob[];
  /** Jobs to release at once (never run): beyond `max`, or with a lease TTL too short to hold. */
  release: LeasedJob[];
  /** Why jobs were refused: counts by reason (`beyond_max`, `ttl_too_short`, `duplicate`). */
  refused: Record<string, number>;
}

/**
 * Takes at most `max` jobs (what the agent asked for), refuses the rest so
 * that the proxy can offer them elsewhere at once, and refuses jobs whose
 * lease TTL is below MIN_LEASE_TTL_MS. A job id seen twice in one answer is
 * dropped without a release (releasing it would release the copy that runs).
 */
export function splitLease(jobs: LeasedJob[], max: number): SplitLease {
  const run: LeasedJob[] = [];
  const release: LeasedJob[] = [];
  const refused: Record<string, number> = {};
  const seen = new Set<string>();
  const refuse = (why: string) => (refused[why] = (refused[why] ?? 0) + 1);
  for (const job of jobs) {
    if (seen.has(job.id)) {
      refuse('duplicate');
      continue;
    }
    seen.add(job.id);
    if (job.leaseTtlMs < MIN_LEASE_TTL_MS) {
      refuse('ttl_too_short');
      release.push(job);
    } else if (run.length >= max) {
      refuse('beyond_max');
      release.push(job);
    } else {
      run.push(boundLeasedJob(job));
    }
  }
  return { run, release, refused };
}
