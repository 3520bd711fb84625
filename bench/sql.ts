/**
 * SQL listing benchmark: a PostgreSQL table of N accounts listed by the SQL
 * connector (queries model, in a child process so that its peak RSS is its
 * own; every page serialised as the agent would send it) beside
 * `psql -c "\copy (same query) to /dev/null"` on the same server, the same
 * query, in the same run.
 *
 *   npm run -s build && source .services/env && node dist/bench/sql.js [--rows 1000000] [--runs 3] [--page 1000]
 *
 * With `--agent`, each run also goes through a real integration-proxy and
 * agent (dist/bin) and times the job from enqueue to the last output record
 * read back (see bench/sql-agent.ts), with both processes' peak RSS; the
 * job's own share (enqueue → succeeded, before the read-back) is printed too.
 * Prints one line per run and a JSON summary (times, ratio, peak RSS).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSqlConnector } from '../lib/connectors/sql/index.js';
import { readSecretFile } from '../lib/config/secrets.js';
import { silentLogger } from '../lib/log/index.js';
import { systemClock } from '../lib/util/clock.js';
import { scratchPostgres } from '../spec/fixtures/sql.js';
import { agentRun, type AgentRunResult } from './sql-agent.js';

interface Args {
  rows: number;
  runs: number;
  page: number;
  agent: boolean;
}

function args(argv: string[]): Args {
  const get = (name: string, dflt: number) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
  return { rows: get('rows', 1_000_000), runs: get('runs', 3), page: get('page', 1000), agent: argv.includes('--agent') };
}

export const QUERY = 'select id, username, email, full_name, active, dept from bench_accounts order by id';

interface ChildResult {
  ms: number;
  /** Of `ms`, the time spent serialising pages (the agent's share, not the connector's). */
  jsonMs: number;
  records: number;
  pages: number;
  bytes: number;
  maxRssMb: number;
}

/** Child mode: one listAccounts through the connector; pages are serialised as the agent would send them. */
async function child(configFile: string): Promise<void> {
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  const sql = createSqlConnector('bench', config, { log: silentLogger(), clock: systemClock, readSecret: (p) => readSecretFile(p) });
  let pages = 0;
  let bytes = 0;
  let jsonMs = 0;
  const started = performance.now();
  const res = await sql.listAccounts(
    {},
    {
      signal: new AbortController().signal,
      log: silentLogger(),
      writePage: async (records) => {
        pages++;
        const t = performance.now();
        bytes += JSON.stringify({ seq: pages, records }).length;
        jsonMs += performance.now() - t;
      },
    },
  );
  const ms = performance.now() - started;
  await sql.close();
  const out: ChildResult = { ms, jsonMs, records: res.records, pages, bytes, maxRssMb: process.resourceUsage().maxRSS / 1024 };
  process.stdout.write(JSON.stringify(out) + '\n');
}

function psqlCopy(url: string): { ms: number; lines: number; maxRssMb: number } {
  const started = performance.now();
  // Counting lines needs the output; `\copy … to stdout` piped into wc costs the same as /dev/null for psql itself.
  const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS_KB=%M', 'psql', url, '-X', '-q', '-c', `\\copy (${QUERY}) to stdout`], {
    encoding: 'utf8',
    maxBuffer: 1024 * 1024 * 1024,
  });
  const ms = performance.now() - started;
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr.slice(-500)}`);
  const lines = r.stdout.length ? r.stdout.split('\n').length - 1 : 0;
  const kb = Number(/MAXRSS_KB=(\d+)/.exec(r.stderr)?.[1] ?? 0);
  return { ms, lines, maxRssMb: kb / 1024 };
}

function psqlDevNull(url: string): { ms: number; maxRssMb: number } {
  const started = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS_KB=%M', 'psql', url, '-X', '-q', '-c', `\\copy (${QUERY}) to /dev/null`], { encoding: 'utf8' });
  const ms = performance.now() - started;
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr.slice(-500)}`);
  return { ms, maxRssMb: Number(/MAXRSS_KB=(\d+)/.exec(r.stderr)?.[1] ?? 0) / 1024 };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const a = args(process.argv.slice(2));
  const serverUrl = process.env.PG_URL;
  if (!serverUrl) throw new Error('PG_URL is not set (source .services/env)');
  const t0 = performance.now();
  const db = await scratchPostgres(serverUrl);
  const dir = mkdtempSync(join(tmpdir(), 'outpost-bench-sql-'));
  try {
    await db.admin.raw(`create table bench_accounts (id bigint primary key, username text not null, email text, full_name text,
                          active boolean not null, dept text)`);
    await db.admin.raw(
      `insert into bench_accounts select g, 'user' || g, 'user' || g || '@example.org', 'User Number ' || g, g % 10 <> 0, 'dept' || (g % 50)
         from generate_series(1, ?) g`,
      [a.rows],
    );
    await db.admin.raw('vacuum analyze bench_accounts');
    const lines = psqlCopy(db.url).lines;
    if (lines !== a.rows) throw new Error(`psql saw ${lines} rows, expected ${a.rows}`);
    const config = {
      kind: 'postgres',
      connection: { url: db.url },
      model: 'queries',
      pageSize: a.page,
      statements: { listAccounts: QUERY },
      columns: { name: 'full_name', enabled: 'active' },
    };
    const cfgFile = join(dir, 'bench.json');
    writeFileSync(cfgFile, JSON.stringify(config));
    console.log(`${a.rows} rows ready in ${((performance.now() - t0) / 1000).toFixed(1)} s; page size ${a.page}; ${a.runs} runs`);

    const psqls: Array<{ ms: number; maxRssMb: number }> = [];
    const conns: ChildResult[] = [];
    const agents: AgentRunResult[] = [];
    for (let i = 0; i < a.runs; i++) {
      const p = psqlDevNull(db.url);
      psqls.push(p);
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', cfgFile], { encoding: 'utf8' });
      const c = JSON.parse(out.trim().split('\n').pop()!) as ChildResult;
      conns.push(c);
      if (c.records !== a.rows) throw new Error(`connector listed ${c.records} records, expected ${a.rows}`);
      let line =
        `run ${i + 1}: psql \\copy ${p.ms.toFixed(0)} ms (${p.maxRssMb.toFixed(1)} MB) | ` +
        `connector ${c.ms.toFixed(0)} ms (of which JSON ${c.jsonMs.toFixed(0)} ms; ${c.records} records, ${c.pages} pages, ${(c.bytes / 1e6).toFixed(1)} MB JSON, peak RSS ${c.maxRssMb.toFixed(1)} MB)`;
      if (a.agent) {
        const r = await agentRun(config, dir, a.rows);
        agents.push(r);
        line += ` | agent+proxy ${r.ms.toFixed(0)} ms (job ${r.jobMs.toFixed(0)} ms, then read back; agent peak RSS ${r.agentMaxRssMb.toFixed(1)} MB, proxy ${r.proxyMaxRssMb.toFixed(1)} MB)`;
      }
      console.log(line);
    }
    const psqlMs = median(psqls.map((p) => p.ms));
    const connMs = median(conns.map((c) => c.ms));
    const summary = {
      rows: a.rows,
      pageSize: a.page,
      runs: a.runs,
      psqlCopyMedianMs: Math.round(psqlMs),
      connectorMedianMs: Math.round(connMs),
      connectorJsonMedianMs: Math.round(median(conns.map((c) => c.jsonMs))),
      connectorRatio: Number((connMs / psqlMs).toFixed(2)),
      connectorPeakRssMb: Number(Math.max(...conns.map((c) => c.maxRssMb)).toFixed(1)),
      psqlPeakRssMb: Number(Math.max(...psqls.map((p) => p.maxRssMb)).toFixed(1)),
      ...(agents.length
        ? {
            agentMedianMs: Math.round(median(agents.map((r) => r.ms))),
            agentRatio: Number((median(agents.map((r) => r.ms)) / psqlMs).toFixed(2)),
            agentJobMedianMs: Math.round(median(agents.map((r) => r.jobMs))),
            agentPeakRssMb: Number(Math.max(...agents.map((r) => r.agentMaxRssMb)).toFixed(1)),
            proxyPeakRssMb: Number(Math.max(...agents.map((r) => r.proxyMaxRssMb)).toFixed(1)),
          }
        : {}),
      // Issue 13, P5: through proxy + agent ≤ 2× psql, agent ≤ 120 MB, proxy ≤ 200 MB.
      targets: { ratioMax: 2, agentRssMaxMb: 120, proxyRssMaxMb: 200 },
    };
    console.log(JSON.stringify(summary));
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await db.drop();
  }
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  await child(argv[1]!);
} else {
  await main();
}
