/**
 * integration-proxy at scale: listings and `/metrics` on a pool with
 * 1 000 000 finished jobs and 5 000 agents (inserted in bulk, directly in the
 * store), on SQLite and PostgreSQL, with the query plans of the statements
 * that must stay indexed; then the proxy's RSS at each quota's limit. The
 * proxy runs as a child process (this file with `serve`), the load comes from
 * this one over loopback HTTP.
 *
 * Also: --memory (RSS at each quota's limit), --slow (600 slow clients),
 * --hotpath (what the indexes cost claim + result), --purge (retention of
 * the whole pool). Loads are in proxy-scale-loads.ts, helpers in proxy-scale-lib.ts.
 *
 *   npm run -s build && node dist/bench/proxy-scale.js …, or without dist/:
 *   npx esbuild bench/proxy-scale.ts --bundle --platform=node --format=esm --packages=external --outfile=node_modules/.cache/outpost-bench/proxy-scale.mjs
 *   PG_URL=postgres://… node node_modules/.cache/outpost-bench/proxy-scale.mjs [--jobs 1000000] [--agents 5000] [--dialects sqlite,postgres] [--runs 7]
 *     [--memory] [--slow] [--hotpath] [--purge]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { loadProxyConfig } from '../lib/config/proxy.js';
import { createProxyServer } from '../lib/proxy/server.js';
import { silentLogger } from '../lib/log/index.js';
import { closeDb, dialectOf, run } from '../lib/proxy/store/db.js';
import { createDatabase, get, openDb, rssMb, startProxy, stopProxy, time } from './proxy-scale-lib.js';
import { HOT_VARIANTS, hotPath, memory, purge, slowClients } from './proxy-scale-loads.js';

const ADMIN = 'adm-bench-0123456789abcdef';
const POOL = 'big';
/** This file: the proxy child runs it with `serve`. */
const SCRIPT = fileURLToPath(import.meta.url);
/** Index sets compared by --hotpath. */if (process.argv[2] === 'serve') {
  const [storeUrl, overrides] = [process.argv[3]!, JSON.parse(process.argv[4] ?? '{}') as Record<string, unknown>];
  const config = loadProxyConfig({ env: {}, overrides: { port: 0, store: { url: storeUrl }, adminToken: ADMIN, ...overrides } });
  const proxy = createProxyServer(config, { log: silentLogger() });
  await proxy.start();
  process.on('message', (m: { pool: string; admin: boolean; id: number }) => {
    void proxy.createToken({ pool: m.pool, admin: m.admin }).then((token) => process.send!({ id: m.id, token }));
  });
  process.on('SIGTERM', () => void proxy.stop().then(() => process.exit(0)));
  process.send!({ url: proxy.url });
} else {
  await main();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: '1000000' },
      agents: { type: 'string', default: '5000' },
      dialects: { type: 'string', default: 'sqlite,postgres' },
      memory: { type: 'boolean', default: false },
      hotpath: { type: 'boolean', default: false },
      slow: { type: 'boolean', default: false },
      purge: { type: 'boolean', default: false },
      runs: { type: 'string', default: '7' },
    },
  });
  const JOBS = Number(values.jobs);
  const AGENTS = Number(values.agents);
  const RUNS = Number(values.runs);
  const dir = mkdtempSync(join(tmpdir(), 'outpost-scale-'));
  try {
    for (const dialect of values.dialects!.split(',')) {
      let url = 'sqlite:' + join(dir, 'scale.db');
      let drop = async () => {};
      if (dialect === 'postgres') {
        const made = await createDatabase();
        url = made.url;
        drop = made.drop;
      }
      try {
        await fill(url, JOBS, AGENTS);
        await explain(url);
        await timings(url, RUNS, JOBS, AGENTS);
        if (values.purge) await purge(url);
      } finally {
        await drop();
      }
    }
    if (values.memory) await memory(SCRIPT, join(dir, 'memory.db'));
    if (values.slow) await slowClients(SCRIPT, join(dir, 'slow.db'));
    if (values.hotpath) {
      for (const dialect of values.dialects!.split(',')) {
        const results = new Map<string, number[]>();
        for (let round = 0; round < 5; round++) {
          for (const variant of HOT_VARIANTS) {
            let url = 'sqlite:' + join(dir, `hot-${randomBytes(4).toString('hex')}.db`);
            let drop = async () => {};
            if (dialect === 'postgres') ({ url, drop } = await createDatabase());
            try {
              const r = await hotPath(url, variant.drop);
              results.set(variant.name, [...(results.get(variant.name) ?? []), r]);
            } finally {
              await drop();
            }
          }
        }
        for (const [name, rs] of results) {
          rs.sort((a, b) => a - b);
          console.log(`hot path (${dialect}), ${name}: claim+result median ${rs[2]} jobs/s (runs: ${rs.join(', ')})`);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
async function fill(url: string, jobs: number, agents: number): Promise<void> {
  const db = await openDb(url);
  const t0 = performance.now();
  const now = Date.now();
  const series = db.dialect === 'postgres' ? `generate_series(1, ${jobs}) AS s(x)` : `(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${jobs}) SELECT x FROM c) AS s`;
  const status = `CASE WHEN x % 50 = 0 THEN 'failed' WHEN x % 97 = 0 THEN 'cancelled' ELSE 'succeeded' END`;
  const pad = db.dialect === 'postgres' ? `lpad(x::text, 12, '0')` : `substr('000000000000' || x, -12, 12)`;
  await run(db, 
    `INSERT INTO outpost_jobs (id, pool, type, resource, payload, status, attempt, max_attempts, timeout_ms, available_at, created_at, started_at, finished_at, result, agent_id, expires_at)
     SELECT 'f' || ${pad}, '${POOL}', 'listAccounts', 'ad', '{}', ${status}, 1, 3, 300000, ${now - 3_600_000} + x, ${now - 3_600_000} + x, ${now - 3_600_000} + x, ${now - 3_600_000} + x + 10,
       '{"records":10}', 'agent-' || (x % ${agents}), ${now} + 86400000 FROM ${series}`,
  );
  const queuedSeries = db.dialect === 'postgres' ? 'generate_series(1, 100) AS s(x)' : `(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100) SELECT x FROM c) AS s`;
  await run(db, 
    `INSERT INTO outpost_jobs (id, pool, type, resource, payload, status, attempt, max_attempts, timeout_ms, available_at, created_at, expires_at)
     SELECT 'q' || ${pad}, '${POOL}', 'listAccounts', 'ad', '{}', 'queued', 0, 3, 300000, ${now}, ${now} + x, ${now} + 86400000 FROM ${queuedSeries}`,
  );
  const agentSeries = db.dialect === 'postgres' ? `generate_series(1, ${agents}) AS s(x)` : `(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ${agents}) SELECT x FROM c) AS s`;
  await run(db, 
    `INSERT INTO outpost_agents (pool, agent_id, hostname, version, resources, last_seen_at)
     SELECT '${POOL}', 'agent-' || x, 'host-' || x || '.corp.example', '0.9.0', '["ad","hr-db"]', ${now} - (x % 120) * 1000 FROM ${agentSeries}`,
  );
  if (db.dialect === 'postgres') await run(db, 'ANALYZE');
  else await run(db, 'ANALYZE');
  console.log(`\n## ${db.dialect}: ${jobs} finished jobs, 100 queued, ${agents} agents inserted in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  await closeDb(db);
}

/** The plan of each statement that must stay indexed. */
async function explain(url: string): Promise<void> {
  const db = await openDb(url);
  const now = Date.now();
  const hint = (st: string) => (db.dialect === 'sqlite' ? `INDEXED BY outpost_jobs_${st}` : '');
  const statements: Array<[string, string, unknown[]]> = [
    ['GET /v1/jobs?status=queued', `SELECT * FROM outpost_jobs ${hint('queued')} WHERE pool = ? AND status = 'queued' ORDER BY created_at DESC, id DESC LIMIT 101`, [POOL]],
    ['GET /v1/jobs?status=leased', `SELECT * FROM outpost_jobs ${hint('leased')} WHERE pool = ? AND status = 'leased' ORDER BY created_at DESC, id DESC LIMIT 101`, [POOL]],
    ['GET /v1/jobs?status=failed', `SELECT * FROM outpost_jobs WHERE pool = ? AND status = 'failed' ORDER BY created_at DESC, id DESC LIMIT 101`, [POOL]],
    ['GET /v1/jobs (a page deep in the pool)', `SELECT * FROM outpost_jobs WHERE pool = ? AND (created_at, id) < (?, ?) ORDER BY created_at DESC, id DESC LIMIT 101`, [POOL, now - 1_800_000, 'z']],
    ['pools with jobs (loose index scan, one step)', `SELECT pool FROM outpost_jobs WHERE pool > ? ORDER BY pool LIMIT 1`, ['']],
    ['queue depth: queued', `SELECT pool, COUNT(*) AS n FROM outpost_jobs WHERE status = 'queued' GROUP BY pool`, []],
    ['queue depth: leased', `SELECT pool, COUNT(*) AS n FROM outpost_jobs WHERE status = 'leased' GROUP BY pool`, []],
    ['queued quota count', `SELECT COUNT(*) AS n FROM outpost_jobs WHERE pool = ? AND status = 'queued'`, [POOL]],
    ['agents online', `SELECT pool, COUNT(*) AS n FROM outpost_agents WHERE last_seen_at >= ? GROUP BY pool`, [now - 90_000]],
    ['agents page', `SELECT * FROM outpost_agents WHERE pool IN (?) AND (pool, agent_id) > (?, ?) ORDER BY pool, agent_id LIMIT 1001`, [POOL, POOL, 'agent-2000']],
    ['agents in flight (a page)', `SELECT agent_id, COUNT(*) AS n FROM outpost_jobs ${hint('leased')} WHERE status = 'leased' AND pool = ? AND agent_id IN (?, ?) GROUP BY agent_id`, [POOL, 'agent-1', 'agent-2']],
    ['retention: finished (a pool)', `SELECT id FROM outpost_jobs WHERE pool = ? AND created_at < ? AND finished_at < ? AND status IN ('succeeded', 'failed', 'cancelled') ORDER BY created_at, id LIMIT 1000`, [POOL, now - 7 * 86_400_000, now - 7 * 86_400_000]],
    ['expiry', `SELECT id FROM outpost_jobs WHERE status = 'queued' AND expires_at <= ? ORDER BY expires_at LIMIT 1000`, [now]],
    ['presence warning', `SELECT 1 AS x FROM outpost_agents WHERE pool = ? AND last_seen_at >= ? AND ${db.dialect === 'postgres' ? 'strpos' : 'instr'}(resources, ?) > 0 LIMIT 1`, [POOL, now - 90_000, '"nope"']],
  ];
  console.log(`\n### query plans (${db.dialect})\n`);
  for (const [what, sql, b] of statements) {
    const rows = await run<Record<string, unknown>>(db, `${db.dialect === 'postgres' ? 'EXPLAIN' : 'EXPLAIN QUERY PLAN'} ${sql}`, b);
    const plan = rows.map((r) => String(r['QUERY PLAN'] ?? r.detail)).join(' | ');
    // The statement's own time (median of 5, after one run), without HTTP or the scrape cache.
    const t = await time(() => run(db, sql, b), 5);
    console.log(`- ${what} (${t.median.toFixed(2)} ms): ${plan}`);
  }
  await closeDb(db);
}
async function timings(storeUrl: string, runs: number, jobs: number, agents: number): Promise<void> {
  const { child, url, token } = await startProxy(SCRIPT, storeUrl, { quotas: { requestsPerToken: 1_000_000 } });
  try {
    const admin = await token(POOL, true);
    const rows: Array<[string, () => Promise<number>]> = [
      ['GET /v1/jobs?status=queued (limit 100)', () => get(`${url}/v1/jobs?status=queued`, admin)],
      ['GET /v1/jobs (limit 100, newest)', () => get(`${url}/v1/jobs`, admin)],
      ['GET /v1/jobs?status=failed (limit 100)', () => get(`${url}/v1/jobs?status=failed`, admin)],
      ['GET /v1/jobs?status=queued, configured admin (all pools)', () => get(`${url}/v1/jobs?status=queued`, ADMIN)],
      ['GET /v1/jobs, 10 pages of 1 000 by cursor', async () => {
        let path = `${url}/v1/jobs?limit=1000`;
        let bytes = 0;
        for (let i = 0; i < 10; i++) {
          const res = await fetch(path, { headers: { authorization: `Bearer ${admin}` } });
          const body = (await res.json()) as { nextCursor: string | null };
          bytes += JSON.stringify(body).length;
          path = `${url}/v1/jobs?limit=1000&cursor=${body.nextCursor}`;
        }
        return bytes;
      }],
      [`GET /v1/agents (bare array: first 1 000 of ${agents})`, () => get(`${url}/v1/agents`, admin)],
      [`GET /v1/agents, every page of 1 000 (${agents})`, async () => {
        let path = `${url}/v1/agents?limit=1000`;
        let bytes = 0;
        for (;;) {
          const res = await fetch(path, { headers: { authorization: `Bearer ${admin}` } });
          const body = (await res.json()) as { nextCursor: string | null };
          bytes += JSON.stringify(body).length;
          if (!body.nextCursor) return bytes;
          path = `${url}/v1/agents?limit=1000&cursor=${body.nextCursor}`;
        }
      }],
      ['GET /metrics (no token)', () => get(`${url}/metrics`, null)],
      ['GET /metrics (admin)', () => get(`${url}/metrics`, ADMIN)],
    ];
    console.log(`\n### timings (${dialectOf(storeUrl)}, ${jobs} finished jobs, ${agents} agents; ${runs} runs after one warm-up; ms)\n`);
    console.log('| request | median ms | max ms | bytes |\n| --- | ---: | ---: | ---: |');
    for (const [what, fn] of rows) {
      const r = await time(fn, runs);
      console.log(`| ${what} | ${r.median.toFixed(1)} | ${r.max.toFixed(1)} | ${r.bytes} |`);
    }
    // 16 scrapes at once, with /healthz asked meanwhile.
    const health: number[] = [];
    let scraping = true;
    const probe = (async () => {
      while (scraping) {
        const t0 = performance.now();
        await get(`${url}/healthz`, null);
        health.push(performance.now() - t0);
      }
    })();
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 16 }, () => get(`${url}/metrics`, ADMIN)));
    const all = performance.now() - t0;
    scraping = false;
    await probe;
    console.log(`\n16 parallel /metrics: ${all.toFixed(1)} ms in all; /healthz meanwhile max ${Math.max(...health).toFixed(1)} ms (${health.length} probes). Proxy RSS ${rssMb(child.pid!)} MB.`);
  } finally {
    await stopProxy(child);
  }
}

/** The proxy's RSS at each quota's limit (defaults), SQLite. */
