import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from '../fixtures/net.js';
import { ROOT, spawnProcess, stopAll } from '../fixtures/processes.js';

/**
 * No Docker engine runs here, so this replays the Dockerfile's build stage
 * in a temp dir — the files it COPYs, `tsc -p tsconfig.image.json`, the
 * agent's bundle, `npm prune --omit=dev` — and runs the result as the image would. It catches
 * a runtime import of a dev dependency, a file the image forgets, or a
 * compiled entry point that does not start.
 */
let dir: string;

function copiedPaths(): string[] {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const build = text.slice(0, text.indexOf('AS runtime'));
  const paths: string[] = [];
  for (const m of build.matchAll(/^COPY\s+(?!--from)(.+)$/gm)) {
    const parts = m[1]!.trim().split(/\s+/);
    paths.push(...parts.slice(0, -1));
  }
  return paths;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'outpost-image-'));
  for (const p of copiedPaths()) cpSync(join(ROOT, p), join(dir, p), { recursive: true });
  // `npm ci` from the lock is what the image runs; a copy of the same tree saves the download here.
  cpSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), { recursive: true, verbatimSymlinks: true });
  execFileSync('npx', ['tsc', '-p', 'tsconfig.image.json'], { cwd: dir, stdio: 'pipe' });
  execFileSync('node', ['scripts/bundle-agent.mjs'], { cwd: dir, stdio: 'pipe' });
  execFileSync('npm', ['prune', '--omit=dev', '--no-audit', '--no-fund'], { cwd: dir, stdio: 'pipe' });
  // The runtime stage copies the shims next to dist/.
  cpSync(join(ROOT, 'bin/agent'), join(dir, 'bin/agent'));
  cpSync(join(ROOT, 'bin/integration-proxy'), join(dir, 'bin/integration-proxy'));
}, 120_000);

afterAll(async () => {
  await stopAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('the image contents (Dockerfile build stage replayed without Docker)', () => {
  it('has no dev dependencies, no tests and no benchmarks', () => {
    expect(existsSync(join(dir, 'node_modules/jest'))).toBe(false);
    expect(existsSync(join(dir, 'node_modules/typescript'))).toBe(false);
    expect(existsSync(join(dir, 'spec'))).toBe(false);
    expect(existsSync(join(dir, 'dist/bench'))).toBe(false);
  });

  it('runs `agent version` and `integration-proxy version` from production dependencies only', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const bin of ['agent', 'integration-proxy']) {
      const r = spawnSync(join(dir, 'bin', bin), ['version'], { encoding: 'utf8' });
      expect({ bin, status: r.status, stderr: r.stderr }).toEqual({ bin, status: 0, stderr: '' });
      expect(r.stdout).toContain(pkg.version);
    }
  });

  it('starts the proxy and an agent that connects to it', async () => {
    const port = await freePort();
    const env = { ...process.env, PROXY_HOST: '127.0.0.1', PROXY_PORT: String(port), PROXY_STORE: `sqlite:${join(dir, 'data/proxy.db')}`, PROXY_ADMIN_TOKEN: 'image-admin-token-0123456789' };
    const token = spawnSync(join(dir, 'bin/integration-proxy'), ['token', 'create', '--pool', 'img'], { env, encoding: 'utf8' });
    expect(token.status).toBe(0);
    const agentToken = token.stdout.trim().split('\n').pop()!;
    spawnProcess(join(dir, 'bin/integration-proxy'), ['start'], { name: 'image-proxy', env });
    await waitFor(async () => (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null))?.status === 200, 20_000, 50);
    const agent = spawnProcess(join(dir, 'bin/agent'), ['start'], {
      name: 'image-agent',
      env: { ...process.env, AGENT_PROXY_URL: `http://127.0.0.1:${port}`, AGENT_TOKEN: agentToken, AGENT_ID: 'image-agent', AGENT_HEALTH_HOST: '127.0.0.1', AGENT_HEALTH_PORT: '0', AGENT_WAIT_MS: '1000' },
    });
    await agent.waitForLine(/"agent started"/);
    await waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${port}/v1/agents`, { headers: { authorization: 'Bearer image-admin-token-0123456789' } });
      return ((await r.json()) as Array<{ agentId: string; status: string }>).some((a) => a.agentId === 'image-agent' && a.status === 'online');
    }, 10_000, 50);
  }, 60_000);
});
