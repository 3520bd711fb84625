import type { Logger } from '../log/index.js';
import type { LeaseRequest, LeaseResponse } from '../protocol/schemas.js';
import type { Clock } from '../util/clock.js';
import { coerceError } from '../util/errors.js';
import type { CarriedRenewals, LeaseKeeper } from './leases.js';
import type { CarriedResults, ResultReporter } from './reporter.js';

/** Options of the lease cargo. */
export interface LeaseCargoOptions {
  /**
   * How long the agent carries nothing after a lease request with cargo was
   * refused as a whole (400 or 413: e.g. an older replica behind the same
   * address that does not know the fields). Default 300 000 ms (5 min).
   */
  refusedPauseMs?: number;
}

/** What one lease request carries, and how its answer is settled. */
export interface Cargo {
  /** The fields added to the lease request (`results`, `leases`). */
  readonly body: Pick<LeaseRequest, 'results' | 'leases'>;
  readonly results: CarriedResults | undefined;
  readonly renewals: CarriedRenewals | undefined;
}

/**
 * Decides what rides on the lease loop's next request: the results waiting
 * in the reporter and, when a heartbeat is due, the keeper's renewals, so
 * that a busy agent makes one call per batch instead of three. Only to a
 * proxy whose latest lease answer lists the field in `carries`; an older
 * proxy refuses unknown fields (400), and then the separate `results` and
 * `heartbeat` calls are used, as before.
 *
 * Fencing is the reporter's and the keeper's, unchanged: a result whose lease
 * is no longer ours is dropped before it is carried, renewals count from the
 * request's send time, and whatever the answer does not settle (a failed
 * call, a missing status) goes back to them and is sent again at once, by the
 * next poll or a call of its own.
 */
export class LeaseCargo {
  private accepted: ReadonlySet<string> = new Set();
  private pausedUntilMs = 0;
  private warned = false;

  constructor(
    private readonly deps: { reporter: ResultReporter; keeper: LeaseKeeper; clock: Clock; log: Logger },
    private readonly opts: LeaseCargoOptions = {},
  ) {}

  /** True when the proxy's latest answer said it takes something on a lease request. */
  get active(): boolean {
    return this.accepted.size > 0 && this.deps.clock.monotonicMs() >= this.pausedUntilMs;
  }

  /** The cargo of the next lease request, or undefined when it carries nothing (call right before sending it). */
  load(): Cargo | undefined {
    if (!this.active) return undefined;
    const results = this.accepted.has('results') ? this.deps.reporter.takeCarried() : undefined;
    let renewals: CarriedRenewals | undefined;
    if (this.accepted.has('leases') && this.deps.keeper.renewalsDue) {
      // Leases whose results ride on the same request need no renewal.
      renewals = this.deps.keeper.takeRenewals(results ? new Set(results.items.map((i) => i.jobId)) : undefined);
    }
    if (!results && !renewals) return undefined;
    return {
      body: { ...(results ? { results: results.items } : {}), ...(renewals ? { leases: renewals.refs } : {}) },
      results,
      renewals,
    };
  }

  /** A lease answer: learns what the proxy takes, and settles the cargo it carried (results first: they end leases). */
  answered(cargo: Cargo | undefined, res: LeaseResponse): void {
    this.accepted = new Set(res.carries ?? []);
    if (!cargo) return;
    cargo.results?.settle(res.results);
    cargo.renewals?.settle(res.leases);
  }

  /**
   * The lease request failed: its cargo goes back. Returns true when the
   * request was refused for its cargo (400/413): the loop polls again at once
   * without it instead of backing off, and nothing is carried for a while.
   */
  failed(cargo: Cargo | undefined, err: unknown): boolean {
    if (!cargo) return false;
    cargo.results?.fail();
    cargo.renewals?.fail();
    const e = coerceError(err);
    if (e.code !== 'invalid_request' && e.code !== 'too_large') return false;
    const pauseMs = this.opts.refusedPauseMs ?? 300_000;
    this.pausedUntilMs = this.deps.clock.monotonicMs() + pauseMs;
    if (!this.warned) {
      this.warned = true;
      this.deps.log.warn('the integration-proxy refused results or renewals carried on a lease request; using the separate calls for a while', {
        code: e.code,
        error: e.message,
        pauseMs,
      });
    }
    return true;
  }
}
