/**
 * A strict semantic version (MAJOR.MINOR.PATCH with an optional
 * -prerelease; build metadata after `+` is ignored), enough to compare
 * agent versions against the proxy's `agents.minVersion` / `latestVersion`.
 * Anything else (`banana`, `1.2`, `v1.2.3`) does not parse: callers treat
 * it as "unknown", never as new enough.
 */
export interface SemVer {
  major: number;
  minor: number;
  patch: number;
  /** Dot-separated identifiers after `-`; empty for a release. */
  prerelease: readonly string[];
}

const NUM = '(0|[1-9]\\d{0,8})';
const IDENT = '(?:0|[1-9]\\d*|\\d*[A-Za-z-][0-9A-Za-z-]*)';
const RE = new RegExp(`^${NUM}\\.${NUM}\\.${NUM}(?:-(${IDENT}(?:\\.${IDENT})*))?(?:\\+[0-9A-Za-z-]+(?:\\.[0-9A-Za-z-]+)*)?$`);

/** Parses `s` (at most 64 characters), or returns null. */
export function parseSemVer(s: string): SemVer | null {
  if (typeof s !== 'string' || s.length > 64) return null;
  const m = RE.exec(s);
  if (!m) return null;
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]), prerelease: m[4] ? m[4].split('.') : [] };
}

/** Negative when a < b, 0 when equal, positive when a > b (semver precedence). */
export function compareSemVer(a: SemVer, b: SemVer): number {
  for (const k of ['major', 'minor', 'patch'] as const) if (a[k] !== b[k]) return a[k] - b[k];
  // A release is newer than any of its prereleases.
  if (!a.prerelease.length || !b.prerelease.length) return b.prerelease.length - a.prerelease.length;
  for (let i = 0; i < Math.max(a.prerelease.length, b.prerelease.length); i++) {
    const x = a.prerelease[i];
    const y = b.prerelease[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (x === y) continue;
    const xn = /^\d+$/.test(x);
    const yn = /^\d+$/.test(y);
    if (xn && yn) return Number(x) - Number(y);
    if (xn !== yn) return xn ? -1 : 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

/** Where an agent's version stands against the proxy's configured versions. */
export type VersionStanding = 'current' | 'outdated' | 'unsupported' | 'invalid';

/**
 * `invalid` (does not parse), `unsupported` (older than `min`), `outdated`
 * (older than `latest`) or `current`. Unset bounds are not checked.
 */
export function versionStanding(version: string, bounds: { minVersion?: string | null; latestVersion?: string | null }): VersionStanding {
  const v = parseSemVer(version);
  if (!v) return 'invalid';
  const min = bounds.minVersion ? parseSemVer(bounds.minVersion) : null;
  if (min && compareSemVer(v, min) < 0) return 'unsupported';
  const latest = bounds.latestVersion ? parseSemVer(bounds.latestVersion) : null;
  if (latest && compareSemVer(v, latest) < 0) return 'outdated';
  return 'current';
}
