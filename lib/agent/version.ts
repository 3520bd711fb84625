import { readFileSync } from 'node:fs';

/**
 * The package version, read once from package.json: `lib/agent` runs from
 * the sources under jest and from `dist/lib/agent` in production, two
 * and three levels below the package root.
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

export const AGENT_VERSION: string = readVersion();
