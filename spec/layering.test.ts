// @integration: runs the real dependency-cruiser CLI (a child process that loads the TypeScript compiler: ~2 s of CPU, more on a loaded machine)
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/**
 * The layering rules of CONTRIBUTING.md (.dependency-cruiser.mjs, run by `npm run lint` and `npm test`)
 * checked against a small tree laid out like the project's: one import that breaks each rule, beside
 * imports every rule allows. Exactly the breaking ones must be reported, and the run must fail.
 */
const ROOT = resolve(import.meta.dirname, '..');
const DEPCRUISE = join(ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');

const imports = (...paths: string[]) => paths.map((p, i) => `import { x as x${i} } from '${p}';\n`).join('') + 'export const x = 1;\n';

/** path → source. */
const TREE: Record<string, string> = {
  'lib/protocol/wire.ts': imports(),
  'lib/util/u.ts': imports('../protocol/wire.js'),
  'lib/log/l.ts': imports('../util/u.js', '../protocol/wire.js'),
  'lib/config/k.ts': imports('../log/l.js', '../util/u.js', '../protocol/wire.js'),
  'lib/connectors/c.ts': imports('../config/k.js', '../log/l.js'),
  'lib/agent/a.ts': imports('../connectors/c.js', '../config/k.js', '../protocol/wire.js'),
  'lib/proxy/p.ts': imports('../config/k.js', '../util/u.js'),
  'bin/agent.ts': imports('../lib/agent/a.js', './signals.js'),
  'bin/signals.ts': imports(),
  'bin/integration-proxy.ts': imports('../lib/proxy/p.js', './proxy-tokens.js', './signals.js'),
  'bin/proxy-tokens.ts': imports('../lib/proxy/p.js'),
  // A type from a devDependency is erased at build time: allowed.
  'lib/agent/types.ts': "import type { T } from 'devdep';\nexport type U = T;\n",
  // One import against each rule.
  'lib/protocol/bad.ts': imports('../util/u.js'),
  'lib/util/bad.ts': imports('../log/l.js'),
  'lib/log/bad.ts': imports('../config/k.js'),
  'lib/config/bad.ts': imports('../connectors/c.js'),
  'lib/connectors/bad.ts': imports('../agent/a.js'),
  'lib/agent/bad.ts': imports('../proxy/p.js'),
  'lib/proxy/bad.ts': imports('../agent/a.js'),
  'lib/proxy/fixture.ts': imports('../../spec/fixture.js'),
  'lib/util/dev.ts': "import devdep from 'devdep';\nexport const x = devdep;\n",
  'lib/util/missing.ts': imports('./nowhere.js'),
  'lib/util/cycle-a.ts': imports('./cycle-b.js'),
  'lib/util/cycle-b.ts': imports('./cycle-a.js'),
  'bin/agent-bad.ts': imports('../lib/proxy/p.js'),
  'bin/proxy-bad.ts': imports('../lib/agent/a.js'),
  'spec/fixture.ts': imports(),
  // The project's resolution: NodeNext, `.js` specifiers for `.ts` files; a devDependency on disk.
  'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true } }),
  'package.json': JSON.stringify({ name: 'layering-probe', type: 'module', devDependencies: { devdep: '1.0.0' } }),
  'node_modules/devdep/package.json': JSON.stringify({ name: 'devdep', version: '1.0.0', main: 'index.js', types: 'index.d.ts' }),
  'node_modules/devdep/index.js': 'module.exports = 1;\n',
  'node_modules/devdep/index.d.ts': 'export type T = number;\ndeclare const x: number;\nexport default x;\n',
};

const EXPECTED = [
  ['agent-bin-never-imports-proxy', 'bin/agent-bad.ts', 'lib/proxy/p.ts'],
  ['agent-never-imports-proxy', 'lib/agent/bad.ts', 'lib/proxy/p.ts'],
  ['config-above-log-only', 'lib/config/bad.ts', 'lib/connectors/c.ts'],
  ['connectors-below-agent', 'lib/connectors/bad.ts', 'lib/agent/a.ts'],
  ['log-above-util-only', 'lib/log/bad.ts', 'lib/config/k.ts'],
  // A cycle is reported once, at its first edge.
  ['no-circular', 'lib/util/cycle-a.ts', 'lib/util/cycle-b.ts'],
  ['not-to-unresolvable', 'lib/util/missing.ts', './nowhere.js'],
  ['protocol-is-a-leaf', 'lib/protocol/bad.ts', 'lib/util/u.ts'],
  ['proxy-bin-never-imports-agent', 'bin/proxy-bad.ts', 'lib/agent/a.ts'],
  ['proxy-never-imports-agent', 'lib/proxy/bad.ts', 'lib/agent/a.ts'],
  ['shipped-code-never-imports-tests', 'lib/proxy/fixture.ts', 'spec/fixture.ts'],
  ['shipped-code-uses-no-dev-dependency', 'lib/util/dev.ts', 'node_modules/devdep/index.js'],
  ['util-above-protocol-only', 'lib/util/bad.ts', 'lib/log/l.ts'],
];

describe('layering (dependency-cruiser, .dependency-cruiser.mjs)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'outpost-layering-'));
    for (const [path, text] of Object.entries(TREE)) {
      mkdirSync(dirname(join(dir, path)), { recursive: true });
      writeFileSync(join(dir, path), text);
    }
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reports each import against a rule, by rule, and none of the allowed ones, and fails the run', () => {
    // The `err` reporter, as `npm run lint` runs it: `error <rule>: <from> → <to>` per violation (a cycle goes on
    // over the next lines: `→ <next>`…).
    const run = spawnSync(process.execPath, [DEPCRUISE, '--config', join(ROOT, '.dependency-cruiser.mjs'), '--output-type', 'err', 'lib', 'bin'], {
      cwd: dir,
      encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    const found = [...run.stdout.matchAll(/^ {2}(\w+) ([\w-]+): (\S+) →\s+(\S+)/gm)]
      .map(([, severity, rule, from, to]) => [severity, rule, from, to])
      .sort((a, b) => a.join(' ').localeCompare(b.join(' ')));
    expect(found).toEqual(EXPECTED.map((v) => ['error', ...v]));
    // It exits with the number of errors: the lint step, and so the build, fails.
    expect(run.status).toBe(EXPECTED.length);
  });
});
