/**
 * Loads of bench/proxy-scale.ts: RSS at each quota's limit, slow clients,
 * the hot-path cost of the indexes, retention of a whole pool.
 */
import { connect } from 'node:net';
import { JobStore } from '../lib/proxy/store/jobs.js';
import { LeaseStore } from '../lib/proxy/store/leases.js';
import { RetentionStore } from '../lib/proxy/store/retention.js';
import { systemClock } from '../lib/util/clock.js';
import { get, openDb, rssMb, startProxy, stopProxy } from './proxy-scale-lib.js';
import { closeDb, run } from '../lib/proxy/store/db.js';

/** Index sets compared by --hotpath. */
export const HOT_VARIANTS = [
  { name: 'with this change\'s indexes', drop: [] as string[] },
  { name: 'without the expiry index', drop: ['outpost_jobs_expiry'] },
  { name: 'with the indexes of before', drop: ['outpost_jobs_pool_created', 'outpost_jobs_expiry'] },
];

export async function memory(script: string, file: string): Promise<void> {
  const { child, url, token } = await startProxy(script, 'sqlite:' + file);
  const pid = child.pid!;
  try {
    console.log(`\n### proxy RSS at each quota's limit (SQLite, default quotas)\n`);
    console.log(`| state | RSS MB | refused beyond |\n| --- | ---: | --- |`);
    console.log(`| started, idle | ${rssMb(pid)} | |`);
    const agentToken = await token('mem', false);
    const adminToken = await token('mem', true);
    const post = (path: string, tok: string, body: unknown, signal?: AbortSignal) =>
      fetch(url + path, { method: 'POST', headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
    const lease = (agentId: string, waitMs: number, signal?: AbortSignal) =>
      post('/v1/agent/lease', agentToken, { agentId, hostname: `${agentId}.corp.example`, version: '0.9.0', resources: Array.from({ length: 60 }, (_, i) => `resource-${String(i).padStart(40, 'x')}`), max: 1, waitMs }, signal);
    // agents per pool: 1 000 agents with ~2.6 KB descriptions each, then one more.
    for (let i = 0; i < 1000; i += 50) await Promise.all(Array.from({ length: 50 }, (_, k) => lease(`a${i + k}`, 0).then((r) => r.arrayBuffer())));
    const extra = await lease('a-extra', 0);
    await extra.arrayBuffer();
    console.log(`| 1 000 agents (agentsPerPool) | ${rssMb(pid)} | agent 1 001: ${extra.status} |`);
    // parked polls per pool: 1 000 parked, then one more.
    const ac = new AbortController();
    const parked = Array.from({ length: 1000 }, (_, i) => lease(`a${i}`, 30_000, ac.signal).catch(() => null));
    await new Promise((r) => setTimeout(r, 3000));
    const more = await lease('a0', 30_000);
    await more.arrayBuffer();
    console.log(`| 1 000 parked polls (parkedPollsPerPool) | ${rssMb(pid)} | poll 1 001: ${more.status} |`);
    ac.abort();
    await Promise.all(parked);
    // queued jobs per pool: 100 000 in batches of 1 000, then one more.
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) {
      const r = await post('/v1/jobs/batch', adminToken, { jobs: Array.from({ length: 1000 }, () => ({ type: 'ping' })) });
      if (r.status !== 201) throw new Error(`batch ${i}: ${r.status} ${await r.text()}`);
      await r.arrayBuffer();
    }
    const enqMs = performance.now() - t0;
    const over = await post('/v1/jobs', adminToken, { type: 'ping' });
    await over.arrayBuffer();
    console.log(`| 100 000 queued jobs (queuedJobsPerPool; enqueued in ${(enqMs / 1000).toFixed(1)} s) | ${rssMb(pid)} | job 100 001: ${over.status} |`);
    // output: 50 pages of ~4 MB for one job (200 MB, under the 1 GiB per job).
    // In a pool of its own (the first one is at its queue limit).
    const [outAgent, outAdmin] = [await token('memout', false), await token('memout', true)];
    const job = (await (await post('/v1/jobs', outAdmin, { type: 'listAccounts', resource: 'r' })).json()) as { id: string };
    const leased = (await (await post('/v1/agent/lease', outAgent, { agentId: 'a1', hostname: 'h', version: '1', resources: ['r'], max: 1, waitMs: 0 })).json()) as { jobs: Array<{ id: string; leaseToken: string; resource: string }> };
    const mine = leased.jobs.find((j) => j.id === job.id);
    let peak = 0;
    if (mine) {
      const records = Array.from({ length: 4000 }, (_, i) => ({ id: `cn=user${i},ou=people,dc=corp,dc=example`, name: 'x'.repeat(900) }));
      for (let seq = 0; seq < 50; seq++) {
        const r = await post(`/v1/agent/jobs/${job.id}/output`, outAgent, { leaseToken: mine.leaseToken, seq, records });
        await r.arrayBuffer();
        if (r.status !== 200) throw new Error(`output ${seq}: ${r.status}`);
        peak = Math.max(peak, rssMb(pid));
      }
    }
    console.log(`| one job's 50 output pages of ~3.7 MB (outputBytesPerJob 1 GiB not reached) | peak ${peak} | |`);
    // request rate: 4 000 GETs as fast as one client goes, with one token.
    let refused = 0;
    const tr = performance.now();
    for (let i = 0; i < 40; i++) {
      const codes = await Promise.all(Array.from({ length: 100 }, () => fetch(`${url}/v1/jobs?limit=1`, { headers: { authorization: `Bearer ${adminToken}` } }).then(async (r) => (await r.arrayBuffer(), r.status))));
      refused += codes.filter((c) => c === 429).length;
    }
    console.log(`| 4 000 GETs in ${((performance.now() - tr) / 1000).toFixed(1)} s with one token (requestsPerToken 3 000/s) | ${rssMb(pid)} | ${refused} answered 429 |`);
  } finally {
    await stopProxy(child);
  }
}

/**
 * What the listing, retention and expiry indexes cost the hot path: 20 000
 * no-op jobs enqueued (batches of 1 000), then claimed 32 at a time and
 * reported, through the stores (no HTTP), with this change's indexes and
 * with them dropped (the old (pool, created_at) index instead).
 */

export async function hotPath(url: string, drop: readonly string[]): Promise<number> {
  const db = await openDb(url);
  for (const ix of drop) await run(db, `DROP INDEX ${ix}`);
  if (drop.includes('outpost_jobs_pool_created')) await run(db, 'CREATE INDEX outpost_jobs_list ON outpost_jobs (pool, created_at)');
  const events = { available() {}, availableAt() {}, changed() {} };
  const jobs = new JobStore({ db, clock: systemClock, events, replicaId: 'bench' });
  const leases = new LeaseStore({ leaseTtlMs: 60_000 }, { db, clock: systemClock, events, replicaId: 'bench' });
  const N = 20_000;
  const t0 = performance.now();
  for (let i = 0; i < N; i += 1000) await jobs.enqueue(Array.from({ length: 1000 }, () => ({ pool: 'hot', type: 'ping' })));
  const t1 = performance.now();
  let done = 0;
  for (;;) {
    const claimed = await leases.claim('hot', 'a1', [], 32);
    if (!claimed.length) break;
    await leases.results('hot', claimed.map((j) => ({ jobId: j.id, leaseToken: j.leaseToken, outcome: 'succeeded' as const, result: { ok: true } })));
    done += claimed.length;
  }
  const t2 = performance.now();
  await closeDb(db);
  void t0;
  return Math.round(done / ((t2 - t1) / 1000));
}

/**
 * 300 clients that send headers and half a body, and 300 that send half
 * their headers, then nothing (default config: requestTimeoutMs 30 s): how
 * long until the proxy has dropped them all, and /healthz meanwhile.
 */
export async function slowClients(script: string, file: string): Promise<void> {
  const { child, url, token } = await startProxy(script, 'sqlite:' + file);
  try {
    const admin = await token('slow', true);
    const { hostname, port } = new URL(url);
    const t0 = performance.now();
    const closedAt: number[] = [];
    const sockets = await Promise.all(
      Array.from({ length: 600 }, (_, i) =>
        new Promise<void>((resolve) => {
          const s = connect(Number(port), hostname, () => {
            s.write(
              i % 2
                ? `POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${admin}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"type":`
                : `POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bear`,
            );
            resolve();
          });
          s.on('error', () => {});
          // Read what comes (the 408): a socket that is not read never sees the proxy's FIN.
          s.resume();
          s.on('close', () => closedAt.push(performance.now() - t0));
        }),
      ),
    );
    void sockets;
    let worst = 0;
    while (closedAt.length < 600 && performance.now() - t0 < 120_000) {
      const h = performance.now();
      await get(`${url}/healthz`, null);
      worst = Math.max(worst, performance.now() - h);
      await new Promise((r) => setTimeout(r, 250));
    }
    closedAt.sort((a, b) => a - b);
    console.log(
      `\n600 slow clients (300 half bodies, 300 half headers; requestTimeoutMs 30 000): ${closedAt.length} dropped, first after ${(closedAt[0]! / 1000).toFixed(1)} s, ` +
        `last after ${(closedAt[closedAt.length - 1]! / 1000).toFixed(1)} s; /healthz worst ${worst.toFixed(1)} ms meanwhile; proxy RSS ${rssMb(child.pid!)} MB`,
    );
  } finally {
    await stopProxy(child);
  }
}

/** Retention working off the whole pool (a first sweep on an old store): batches of 1 000, each timed. */
export async function purge(url: string): Promise<void> {
  const db = await openDb(url);
  const events = { available() {}, availableAt() {}, changed() {} };
  const jobs = new JobStore({ db, clock: systemClock, events, replicaId: 'bench' });
  const retention = new RetentionStore({ db, clock: systemClock });
  const t0 = performance.now();
  let total = 0;
  let worst = 0;
  for (;;) {
    const b0 = performance.now();
    const n = await retention.deleteFinished(await jobs.pools(), 0, 1000);
    worst = Math.max(worst, performance.now() - b0);
    total += n;
    if (n < 1000) break;
  }
  console.log(`\nretention (${db.dialect}): ${total} finished jobs deleted in ${((performance.now() - t0) / 1000).toFixed(1)} s, batches of 1 000, slowest batch ${worst.toFixed(1)} ms`);
  await closeDb(db);
}
