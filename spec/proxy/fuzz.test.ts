// @integration: a fuzzing run (FUZZ_RUNS, 11 000 requests by default) against real SQLite and PostgreSQL stores
import { describe, it, expect, beforeAll, afterAll } from '@jest/globals';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { closeDb, openDb, run, type Db } from '../../lib/proxy/store/db.js';
import { HTTP_STATUS_BY_CODE } from '../../lib/protocol/errors.js';
import { createTestDatabase, startTestProxy, tempDir, TEST_ADMIN_TOKEN, type TestProxy } from '../fixtures/proxy-server.js';
import { RawClient, type RawAnswer } from '../fixtures/raw-http.js';
import { refusedOrRead, requestArb, type AuthKind, type FuzzRequest, type FuzzWorld } from '../fixtures/fuzz-requests.js';

/**
 * The proxy under hostile input (issue 10, item 6): mutated requests from the
 * protocol's TypeBox schemas on every route, with no token, a wrong or revoked
 * one, an agent, a viewer, a pool admin and the configured admin token.
 * Properties: never a 5xx; every refusal `{"error": {code, message}}` as JSON
 * with the status of its code, never quoting a token nor mangled by
 * redaction; refused requests change no row of jobs, agents or output; the
 * proxy answers `/healthz` quickly afterwards (measured and printed).
 *
 * FUZZ_SEED (default fixed) and FUZZ_RUNS (requests on SQLite, default
 * 11 000; PostgreSQL runs a third) reproduce or widen a run; the seed is
 * printed, and the answer table (with `sent`/`mutated` counts) after each store.
 * FUZZ_CONCURRENCY (default 6 sockets; 1 makes the trace sequential) and
 * FUZZ_TRACE=<file> (every request and answer) help to read a failure.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261202);
// 11 000: about 95 % of the generated requests are hostile in some way, so ≥ 10 000 mutated ones on SQLite alone.
const RUNS = Number(process.env.FUZZ_RUNS ?? 11_000);
const CONCURRENCY = Number(process.env.FUZZ_CONCURRENCY ?? 6);
const CHUNK = 500;
const STORE_TABLES = ['outpost_jobs', 'outpost_agents', 'outpost_output'];

/** Rows of the tables a refused request must not change, keyed by primary key columns. */
type Snapshot = Map<string, Map<string, string>>;

async function snapshot(db: Db): Promise<Snapshot> {
  const out: Snapshot = new Map();
  for (const table of STORE_TABLES) {
    const rows = new Map<string, string>();
    const cols = table === 'outpost_jobs' ? ['id'] : table === 'outpost_agents' ? ['pool', 'agent_id'] : ['job_id', 'lease_token', 'seq'];
    for (const row of await run<Record<string, unknown>>(db, `SELECT * FROM ${table}`)) {
      rows.set(cols.map((c) => String(row[c])).join('/'), createHash('sha256').update(JSON.stringify(row)).digest('hex'));
    }
    out.set(table, rows);
  }
  return out;
}

/** What changed between two snapshots, briefly; '' when nothing did. */
function diff(a: Snapshot, b: Snapshot): string {
  const parts: string[] = [];
  for (const table of STORE_TABLES) {
    const x = a.get(table)!;
    const y = b.get(table)!;
    const added = [...y.keys()].filter((k) => !x.has(k));
    const removed = [...x.keys()].filter((k) => !y.has(k));
    const changed = [...y.keys()].filter((k) => x.has(k) && x.get(k) !== y.get(k));
    if (added.length || removed.length || changed.length) {
      parts.push(`${table}: +${added.length} ${added.slice(0, 3).join(',')} -${removed.length} ${removed.slice(0, 3).join(',')} ~${changed.length} ${changed.slice(0, 3).join(',')}`);
    }
  }
  return parts.join('; ');
}

interface Violation {
  why: string;
  request: string;
  answer: string;
}

function describeRequest(r: FuzzRequest): string {
  const body = r.body === undefined ? '' : ` body(${Buffer.byteLength(r.body)}B)=${JSON.stringify(String(r.body).slice(0, 160))}`;
  return `${r.method} ${r.path.slice(0, 160)} [${r.note}] auth=${r.auth} ct=${r.headers?.['content-type'] ?? '-'}${body}`;
}

/** Statuses fastify's parser-level handlers answer outside the code table (errors.ts clientErrorHandler). */
const EXTRA_STATUS: Record<string, number[]> = { too_large: [431], timeout: [408] };

/** The per-answer properties; null when the answer is fine. */
function judge(r: FuzzRequest, a: RawAnswer, secrets: string[], phase: 'anonymous' | 'refused' | 'any'): string | null {
  if (a.status >= 500) return `a ${a.status}`;
  for (const s of secrets) if (a.text.includes(s)) return 'the answer quotes a token';
  const reads = r.method === 'GET' || r.method === 'HEAD';
  if (a.status < 300) {
    if (phase === 'anonymous' && !(reads && r.route.public)) return `a ${a.status} without a valid token`;
    if (phase === 'refused' && !reads) return `a ${a.status} for a request the schema refuses`;
    return null;
  }
  if (r.method === 'HEAD') return null;
  if (!/^application\/json\b/i.test(a.contentType)) return `content-type ${a.contentType || '(none)'} on a ${a.status}`;
  let body: unknown;
  try {
    body = JSON.parse(a.text);
  } catch {
    return `a ${a.status} whose body is not JSON`;
  }
  const error = (body as { error?: { code?: unknown; message?: unknown } }).error;
  if (!error || Object.keys(body as object).length !== 1 || typeof error.code !== 'string' || typeof error.message !== 'string' || !error.message || Object.keys(error).length !== 2) {
    return `a ${a.status} not in the shape {"error": {code, message}}`;
  }
  const expected = HTTP_STATUS_BY_CODE[error.code as keyof typeof HTTP_STATUS_BY_CODE];
  if (expected !== a.status && !(EXTRA_STATUS[error.code] ?? []).includes(a.status)) return `code ${error.code} with status ${a.status}`;
  if (error.message.includes('[REDACTED]')) return 'a mangled message';
  // Authentication first (issue 10 item 1): without a valid token nothing about the body or the job is judged;
  // only an unreadable URL or request line, or a path that is no route, may be answered otherwise.
  const beforeAuth = error.code === 'unauthorized' || a.status === 431 || a.status === 408
    || (error.code === 'invalid_request' && /^(path:|malformed HTTP request)/.test(error.message))
    || (error.code === 'not_found' && error.message.startsWith('no route'));
  if (phase === 'anonymous' && !beforeAuth) return `${error.code} before authentication`;
  return null;
}

describe.each([
  ['sqlite', RUNS],
  ['postgres', Math.max(500, Math.round(RUNS / 3))],
] as const)('fuzzing the proxy on %s', (kind, runs) => {
  const tmp = tempDir();
  let dropDb: (() => Promise<void>) | undefined;
  let t: TestProxy;
  let db: Db;
  let client: RawClient;
  let world: FuzzWorld;
  let secrets: string[];
  const stats = new Map<string, number>();
  /** With FUZZ_TRACE=<file>, every request and answer, for reading a run afterwards. */
  const trace: string[] = [];

  beforeAll(async () => {
    let url = 'sqlite:' + join(tmp.dir, 'proxy.db');
    if (kind === 'postgres') {
      const tdb = await createTestDatabase();
      url = tdb.url;
      dropDb = () => tdb.drop();
    }
    // Small body limit so that huge strings reach 413; short polls; nothing expires on its own during the run.
    t = await startTestProxy({ store: url, overrides: { bodyLimitBytes: 256 * 1024, maxWaitMs: 50, leaseTtlMs: 3_600_000, reaperIntervalMs: 3_600_000 } });
    db = await openDb(url);
    const other = await t.proxy.createToken({ pool: 'p2', admin: true });
    const viewer = await t.proxy.createToken({ pool: t.pool, role: 'viewer' });
    const revoked = await t.proxy.issueToken({ pool: t.pool, role: 'admin' });
    await t.proxy.revokeToken(revoked.id);
    const jobIds = [
      await t.admin.enqueue({ type: 'ping' }),
      await t.admin.enqueue({ type: 'ping' }),
      await t.admin.enqueue({ type: 'ping', idempotencyKey: 'k1' }),
      await t.admin.enqueue({ type: 'ping', maxAttempts: 1 }),
    ];
    jobIds.push(await t.admin.as(other).enqueue({ type: 'ping' }));
    const leased = await t.agent.lease({ agentId: 'agent-1', max: 2 });
    const leaseTokens = leased.map((j) => j.leaseToken as string);
    await t.agent.post(`/v1/agent/jobs/${leased[0].id}/output`, { leaseToken: leaseTokens[0], seq: 0, records: [{ id: 'r1' }] });
    await t.agent.post('/v1/agent/results', { agentId: 'agent-1', results: [{ jobId: leased[1].id, leaseToken: leaseTokens[1], outcome: 'succeeded', result: { ok: true } }] });
    leaseTokens.push('0123456789abcdef0123');
    world = {
      pool: t.pool,
      jobIds,
      leaseTokens,
      agentIds: ['agent-1', 'agent-2'],
      auth: {
        agent: `Bearer ${t.agent.token}`,
        admin: `Bearer ${t.admin.token}`,
        configuredAdmin: `Bearer ${TEST_ADMIN_TOKEN}`,
        viewer: `Bearer ${viewer}`,
        revoked: `Bearer ${revoked.token}`,
      },
    };
    secrets = [t.agent.token, t.admin.token, TEST_ADMIN_TOKEN, other, viewer, revoked.token];
    client = new RawClient(t.proxy.url, CONCURRENCY);
    process.stdout.write(`fuzz (${kind}): FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS} (${runs} requests here)\n`);
  });

  afterAll(async () => {
    client?.close();
    if (db) await closeDb(db);
    await t?.stop();
    await dropDb?.();
    tmp.cleanup();
    const table = [...stats.entries()].sort().map(([k, n]) => `${k}=${n}`).join(' ');
    process.stdout.write(`fuzz (${kind}) answers: ${table}\n`);
    if (process.env.FUZZ_TRACE) writeFileSync(`${process.env.FUZZ_TRACE}.${kind}`, trace.join('\n') + '\n');
  });

  /**
   * Sends `requests` on keep-alive connections, judges every answer and, for
   * refused-only phases, compares the store every CHUNK requests.
   */
  async function run(requests: FuzzRequest[], phase: 'anonymous' | 'refused' | 'any'): Promise<Violation[]> {
    const violations: Violation[] = [];
    const checkStore = phase !== 'any';
    let before = checkStore ? await snapshot(db) : null;
    for (let start = 0; start < requests.length; start += CHUNK) {
      const chunk = requests.slice(start, start + CHUNK);
      let next = 0;
      const worker = async () => {
        while (next < chunk.length) {
          const r = chunk[next++]!;
          stats.set('sent', (stats.get('sent') ?? 0) + 1);
          if (r.mutated) stats.set('mutated', (stats.get('mutated') ?? 0) + 1);
          let answer: RawAnswer;
          try {
            answer = await client.send(r);
          } catch (err) {
            // A refused caller's body may be left unread and the connection closed: no answer is also a refusal.
            // So is a request line Node's parser refuses (its 400 has a body, which a HEAD client cannot read).
            const unread = (r.auth === 'none' || r.auth === 'wrong') && r.body !== undefined;
            const unparsable = r.method === 'HEAD' && !r.path.startsWith('/');
            stats.set(`${phase}:reset`, (stats.get(`${phase}:reset`) ?? 0) + 1);
            if (process.env.FUZZ_TRACE) trace.push(`${phase}:reset ${describeRequest(r)} → ${(err as Error).message}`);
            if (!unread && !unparsable) violations.push({ why: `no answer: ${(err as Error).message}`, request: describeRequest(r), answer: '' });
            continue;
          }
          const key = `${phase}:${answer.status}`;
          stats.set(key, (stats.get(key) ?? 0) + 1);
          if (process.env.FUZZ_TRACE) trace.push(`${key} ${describeRequest(r)} → ${answer.text.slice(0, 120)}`);
          const why = judge(r, answer, secrets, phase);
          if (why) violations.push({ why, request: describeRequest(r), answer: `${answer.status} ${answer.contentType} ${answer.text.slice(0, 200)}` });
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      if (before) {
        const after = await snapshot(db);
        const changed = diff(before, after);
        if (changed) violations.push({ why: `store changed by refused requests ${start}–${start + chunk.length - 1}`, request: chunk.map(describeRequest).slice(0, 3).join(' | '), answer: changed });
        before = after;
      }
    }
    return violations;
  }

  function sample(kinds: AuthKind[], n: number, seedOffset: number, refusedOnly: boolean): FuzzRequest[] {
    const arb = requestArb(world, kinds, { ascii: refusedOnly });
    const started = performance.now();
    const out = fc.sample(refusedOnly ? arb.filter(refusedOrRead) : arb, { seed: SEED + seedOffset, numRuns: n });
    stats.set('generateMs', Math.round((stats.get('generateMs') ?? 0) + performance.now() - started));
    return out;
  }

  /** Violations grouped by reason, with up to 3 examples each, for a readable failure. */
  function report(violations: Violation[]): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const v of violations) {
      const list = (out[`${v.why.replace(/\d+–\d+/, 'N')}`] ??= []);
      if (list.length < 3) list.push(`${v.request}\n    → ${v.answer}`);
    }
    return out;
  }

  it('without a valid token (none, wrong, revoked): 401 before the body is judged, the protocol shape, nothing stored', async () => {
    const violations = await run(sample(['none', 'wrong'], Math.round(runs * 0.3), 1, false), 'anonymous');
    expect(report(violations)).toEqual({});
  }, 120_000);

  it('with tokens, requests the schemas refuse: the protocol shape, no 5xx, and nothing is stored', async () => {
    const violations = await run(sample(['agent', 'admin', 'configuredAdmin', 'viewer'], Math.round(runs * 0.35), 2, true), 'refused');
    expect(report(violations)).toEqual({});
  }, 120_000);

  it('anything with any token: no 5xx, every refusal in the protocol shape', async () => {
    const violations = await run(sample(['agent', 'admin', 'configuredAdmin', 'viewer', 'none', 'wrong'], Math.round(runs * 0.35), 3, false), 'any');
    expect(report(violations)).toEqual({});
  }, 120_000);

  it('is alive afterwards and /healthz answers quickly', async () => {
    const fresh = new RawClient(t.proxy.url, 1);
    const times: number[] = [];
    try {
      for (let i = 0; i < 50; i++) {
        const a = await fresh.send({ method: 'GET', path: '/healthz' }, 10_000);
        expect(a.status).toBe(200);
        times.push(a.ms);
      }
    } finally {
      fresh.close();
    }
    times.sort((x, y) => x - y);
    process.stdout.write(`fuzz (${kind}): /healthz after the run p50 ${times[25]!.toFixed(1)} ms, max ${times[49]!.toFixed(1)} ms\n`);
    // Generous: a proxy wedged by the run would not answer within seconds.
    expect(times[49]).toBeLessThan(5_000);
  });
});
