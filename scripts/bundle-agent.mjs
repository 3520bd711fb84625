#!/usr/bin/env node
// Bundles the agent for running: bin/agent.ts and everything it loads, split
// into ES module chunks in dist/agent/ (run by the bin/agent shim). The
// connectors, `check`, `seal` and libsodium stay in their own chunks, loaded
// on first use as before. Why: Node loads ~470 separate modules for the
// agent (218 of them TypeBox's), and the module loader's per-module cost was
// a quarter of an idle agent's memory (README, "Idle memory"). Also used by
// scripts/package-windows.mjs (one file, version injected).
//
//   node scripts/bundle-agent.mjs        (run by `npm run build`, after tsc)
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Drivers knex can load that the agent does not ship: required only if configured, then a clear error. */
const EXTERNAL = ['better-sqlite3', 'sqlite3', 'mysql', 'mariadb', 'mariadb/*', 'oracledb', 'pg-native', 'pg-query-stream', 'cloudflare:sockets'];

/**
 * The SQL drivers load optional modules lazily with `createRequire(import.meta.url)('x')`, which a
 * bundler cannot follow. In the bundle that becomes `require('x')` (esbuild bundles it, still lazy).
 */
const lazyRequirePlugin = {
  name: 'lazy-require',
  setup(build) {
    build.onLoad({ filter: /[\\/](lib|bin)[\\/].*\.ts$/ }, (a) => {
      const src = readFileSync(a.path, 'utf8');
      if (!src.includes('createRequire(import.meta.url)')) return undefined;
      const contents = src.replaceAll('createRequire(import.meta.url)(', 'require(');
      if (contents.includes('createRequire(import.meta.url)')) throw new Error(`${a.path}: createRequire(import.meta.url) used other than as createRequire(import.meta.url)('x')`);
      return { contents, loader: 'ts' };
    });
  },
};

/** esbuild options shared by both bundles: ESM for Node `nodeMajor`, drivers above left out. */
export function agentBuildOptions(nodeMajor) {
  return {
    entryPoints: [join(ROOT, 'bin/agent.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: `node${nodeMajor}`,
    external: EXTERNAL,
    // CommonJS dependencies call require() for Node builtins; an ESM bundle has none of its own.
    banner: { js: "import { createRequire as __outpostCreateRequire } from 'node:module'; const require = __outpostCreateRequire(import.meta.url);" },
    plugins: [lazyRequirePlugin],
    legalComments: 'linked',
    logLevel: 'warning',
    metafile: true,
  };
}

async function main() {
  const esbuild = await import('esbuild');
  const outdir = join(ROOT, 'dist/agent');
  rmSync(outdir, { recursive: true, force: true });
  const t0 = Date.now();
  // The version is read from package.json two levels up at run time, as from dist/lib/util (no define).
  const res = await esbuild.build({ ...agentBuildOptions(20), outdir, splitting: true, sourcemap: 'linked', chunkNames: 'chunks/[name]-[hash]' });
  const outputs = Object.keys(res.metafile.outputs).filter((f) => f.endsWith('.js'));
  process.stderr.write(`[bundle-agent] bin/agent.ts → dist/agent/ (${outputs.length} files, ${Object.keys(res.metafile.inputs).length} inputs) in ${Date.now() - t0} ms\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().catch((err) => {
    process.stderr.write(`[bundle-agent] ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
