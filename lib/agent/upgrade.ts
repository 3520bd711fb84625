import type { Logger } from '../log/index.js';
import { compareSemVer, parseSemVer } from '../protocol/semver.js';
import type { Clock } from '../util/clock.js';
import { OutpostError } from '../util/errors.js';

/** Options of the version notices. */
export interface UpgradeNoticeOptions {
  /** This agent's version. */
  version: string;
  /** At most one line of each kind per this period. Default 1 h. */
  everyMs?: number;
  /** Wait after a 426 when the proxy names none (Retry-After). Default 5 min. */
  refusedBackoffMs?: number;
}

/** How to upgrade, for the log lines (README "Upgrading the agent"). */
const HOW = 'install the new outpost-agent package (or image) and restart the agent service';
/** Bounds on the wait after a 426: the proxy will not change its mind in seconds, and it must not wait forever. */
const MIN_REFUSED_MS = 30_000;
const MAX_REFUSED_MS = 300_000;

/**
 * What the agent does with the versions the proxy names: one warning per
 * hour while it is older than `latestVersion` (still served), and, once the
 * proxy refuses it (426 upgrade_required: older than `minVersion`), one
 * error per hour and a long wait between polls — the agent keeps running
 * (health, metrics) and takes work again as soon as it is upgraded or the
 * proxy's minimum is lowered.
 */
export class UpgradeNotice {
  private warnedAtMs = -Infinity;
  private refusedAtMs = -Infinity;
  private readonly own;

  constructor(
    private readonly deps: { clock: Clock; log: Logger },
    private readonly opts: UpgradeNoticeOptions,
  ) {
    this.own = parseSemVer(opts.version);
  }

  /** A lease answer was read: warns (once an hour) when the proxy names a newer version. */
  answered(res: { latestVersion?: string; minVersion?: string }): void {
    const latest = res.latestVersion ? parseSemVer(res.latestVersion) : null;
    if (!latest || (this.own && compareSemVer(this.own, latest) >= 0)) return;
    const now = this.deps.clock.monotonicMs();
    if (now - this.warnedAtMs < (this.opts.everyMs ?? 3_600_000)) return;
    this.warnedAtMs = now;
    this.deps.log.warn(`this agent is version ${this.opts.version}; the integration-proxy names ${res.latestVersion} as the latest. Upgrade: ${HOW}`, {
      version: this.opts.version, latestVersion: res.latestVersion, ...(res.minVersion ? { minVersion: res.minVersion } : {}),
    });
  }

  /** True for the proxy's refusal of this agent's version. */
  static isRefusal(err: unknown): err is OutpostError {
    return err instanceof OutpostError && err.code === 'upgrade_required';
  }

  /** A poll got 426: logs (once an hour) and returns how long to wait before the next poll. */
  refused(err: OutpostError): number {
    const now = this.deps.clock.monotonicMs();
    if (now - this.refusedAtMs >= (this.opts.everyMs ?? 3_600_000)) {
      this.refusedAtMs = now;
      this.deps.log.error(`the integration-proxy refuses this agent's version ${this.opts.version}: ${err.message}. Until then this agent takes no jobs; it keeps polling every few minutes`, {
        code: err.code, version: this.opts.version,
      });
    }
    const wait = err.retryAfterMs ?? this.opts.refusedBackoffMs ?? MAX_REFUSED_MS;
    return Math.min(MAX_REFUSED_MS, Math.max(this.opts.refusedBackoffMs !== undefined ? 0 : MIN_REFUSED_MS, wait));
  }
}
