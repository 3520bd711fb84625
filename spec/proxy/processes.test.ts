// @integration: real integration-proxy processes from dist/ (spawned CLI, restarts, two replicas on PostgreSQL)
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { join } from 'node:path';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { Api, createTestDatabase, tempDir, untilParked } from '../fixtures/proxy-server.js';
import { buildDist, runProxyCli, startProxyProcess, type ProxyProcess } from '../fixtures/proxy-process.js';
import { hashToken } from '../../lib/proxy/store/tokens.js';

/** Real `integration-proxy` processes from dist/. */
describe('integration-proxy processes', () => {
  const tmp = tempDir();
  const running: ProxyProcess[] = [];
  let pgDb: Awaited<ReturnType<typeof createTestDatabase>>;

  beforeAll(async () => {
    buildDist();
    pgDb = await createTestDatabase();
  }, 60_000);
  afterAll(async () => {
    for (const p of running) await p.stop('SIGKILL');
    await pgDb?.drop();
    tmp.cleanup();
  });

  const lastLine = (s: string) => s.trimEnd().split('\n').at(-1)!;

  it('token create prints the token alone on the last line and stores only its hash', async () => {
    const store = 'sqlite:' + join(tmp.dir, 'tokens.db');
    const r = runProxyCli(['token', 'create', '--pool', 'corp'], { PROXY_STORE: store });
    expect(r.status).toBe(0);
    const token = lastLine(r.stdout);
    expect(token).toMatch(/^opt_[A-Za-z0-9_-]{32}$/);
    const admin = runProxyCli(['token', 'create', '--pool', 'corp', '--admin'], { PROXY_STORE: store });
    const adminToken = lastLine(admin.stdout);
    const db = new Database(join(tmp.dir, 'tokens.db'), { readonly: true });
    const rows = db.prepare('SELECT * FROM outpost_tokens').all() as Array<{ hash: string; pool: string; admin: number }>;
    db.close();
    expect(rows.map((x) => x.hash).sort()).toEqual([hashToken(token), hashToken(adminToken)].sort());
    expect(rows.every((x) => x.pool === 'corp')).toBe(true);
    for (const f of ['tokens.db', 'tokens.db-wal']) {
      let bytes: string;
      try {
        bytes = readFileSync(join(tmp.dir, f)).toString('latin1');
      } catch {
        continue;
      }
      expect(bytes).not.toContain(token);
      expect(bytes).not.toContain(adminToken);
    }
    // The tokens work against a proxy started on that store.
    const p = await startProxyProcess({ PROXY_STORE: store });
    running.push(p);
    const id = await new Api(p.url, adminToken).enqueue({ type: 'ping' });
    const [job] = await new Api(p.url, token).lease();
    expect(job.id).toBe(id);
    expect(await p.stop()).toBe(0);
    expect(p.stdout() + p.stderr()).not.toContain(token);
  });

  it('bad arguments and invalid config exit non-zero naming the problem; version prints', async () => {
    const bad = runProxyCli(['start'], { PROXY_PORT: '99999' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain('port');
    const cfgFile = join(tmp.dir, 'bad.json');
    writeFileSync(cfgFile, JSON.stringify({ leaseTtlMs: -5 }));
    const badFile = runProxyCli(['start', '--config', cfgFile], {});
    expect(badFile.status).not.toBe(0);
    expect(badFile.stderr).toContain('leaseTtlMs');
    const unknownKey = runProxyCli(['start'], { PROXY_CONFIG: writeJson('unknown.json', { colour: 'blue' }) });
    expect(unknownKey.status).not.toBe(0);
    expect(unknownKey.stderr).toContain('colour');
    const secret = 'adm-secret-value-0123456789';
    const badAdmin = runProxyCli(['start'], { PROXY_ADMIN_TOKEN: secret, PROXY_LEASE_TTL_MS: 'soon' });
    expect(badAdmin.status).not.toBe(0);
    expect(badAdmin.stderr + badAdmin.stdout).not.toContain(secret);
    expect(runProxyCli(['token', 'create'], {}).status).not.toBe(0);
    expect(runProxyCli(['frobnicate'], {}).status).not.toBe(0);
    const v = runProxyCli(['version'], {});
    expect(v.status).toBe(0);
    expect(v.stdout).toMatch(/^integration-proxy \d+\.\d+\.\d+/);
  });

  function writeJson(name: string, value: unknown): string {
    const f = join(tmp.dir, name);
    writeFileSync(f, JSON.stringify(value));
    return f;
  }

  it('a restart on the same SQLite file loses no job; a lease of the old process expires and is re-offered', async () => {
    const store = 'sqlite:' + join(tmp.dir, 'restart.db');
    const env = { PROXY_STORE: store, PROXY_LEASE_TTL_MS: '1500', PROXY_REAPER_INTERVAL_MS: '100', PROXY_ADMIN_TOKEN: 'adm-restart-0123456789' };
    const token = lastLine(runProxyCli(['token', 'create', '--pool', 'p'], env).stdout);
    const first = await startProxyProcess(env);
    running.push(first);
    const admin = new Api(first.url, env.PROXY_ADMIN_TOKEN);
    const leasedId = await admin.enqueue({ pool: 'p', type: 'ping' });
    const [l1] = await new Api(first.url, token).lease({ max: 1 });
    expect(l1.id).toBe(leasedId);
    const queuedId = await admin.enqueue({ pool: 'p', type: 'ping' });
    expect(await first.stop('SIGINT')).toBe(0);
    // Its background checkpointer closed first, so the proxy's close was the last one: the WAL is folded in and removed.
    expect(existsSync(join(tmp.dir, 'restart.db-wal'))).toBe(false);

    const second = await startProxyProcess(env);
    running.push(second);
    const agent = new Api(second.url, token);
    // The queued job is there at once; the old lease comes back when it expires (1.5 s), whichever is first.
    const seen = new Map<string, number>();
    while (seen.size < 2) for (const j of await agent.lease({ max: 10, waitMs: 10_000 })) seen.set(j.id, j.attempt);
    expect(Object.fromEntries(seen)).toEqual({ [queuedId]: 1, [leasedId]: 2 });
    expect(await second.stop()).toBe(0);
  });

  it('two proxies on one PostgreSQL database: an enqueue through one wakes a poll parked on the other', async () => {
    const env = { PROXY_STORE: pgDb.url, PROXY_ADMIN_TOKEN: 'adm-replicas-0123456789', PROXY_MAX_WAIT_MS: '30000' };
    const token = lastLine(runProxyCli(['token', 'create', '--pool', 'pg-pool'], env).stdout);
    const [a, b] = await Promise.all([startProxyProcess(env), startProxyProcess(env)]);
    running.push(a, b);
    const waitMs = 25_000;
    for (const [from, to] of [[a, b], [b, a]] as const) {
      const started = Date.now();
      const parked = new Api(to.url, token).lease({ waitMs });
      await untilParked(to.url, env.PROXY_ADMIN_TOKEN, 1);
      const id = await new Api(from.url, env.PROXY_ADMIN_TOKEN).enqueue({ pool: 'pg-pool', type: 'ping' });
      const jobs = await parked;
      expect(jobs.map((j) => j.id)).toEqual([id]);
      expect(Date.now() - started).toBeLessThan(waitMs);
    }
    expect(await a.stop()).toBe(0);
    expect(await b.stop()).toBe(0);
  });
});
