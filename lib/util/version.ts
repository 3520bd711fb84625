import { readFileSync } from 'node:fs';

/**
 * The package version, read once from package.json when not injected: `lib/util` runs from the
 * sources under jest and from `dist/lib/util` in production, two and three
 * levels below the package root.
 */
function readVersion(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'outpost' && pkg.version) return pkg.version;
    } catch {
      // try the next candidate
    }
  }
  return '0.0.0';
}

/**
 * Set by the bundler (esbuild `define`, scripts/package-windows.mjs): a bundle
 * has no package.json beside it. Unset (typeof → 'undefined') when run from
 * the sources or dist/.
 */
declare const __OUTPOST_VERSION__: string | undefined;

/** Outpost's version (injected at build time, else package.json), shown by `version`, reported by agents and on the dashboard. */
export const PACKAGE_VERSION: string = typeof __OUTPOST_VERSION__ === 'string' ? __OUTPOST_VERSION__ : readVersion();
