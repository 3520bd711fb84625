import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import Database from 'better-sqlite3';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { countRecordLines } from '../../lib/proxy/http/ndjson-page.js';
import { Api, createTestDatabase, startTestProxy, tempDir, type TestProxy } from '../fixtures/proxy-server.js';

/**
 * `POST /v1/agent/jobs/{id}/output` in both forms over real HTTP, on SQLite
 * and PostgreSQL: NDJSON pages stored as sent and read back in seq order,
 * gzip bodies bounded by the body limit once inflated, framing refusals,
 * fencing by lease token, and the older JSON form still accepted.
 */
const NDJSON = { 'content-type': 'application/x-ndjson' };

describe.each(['sqlite', 'postgres'] as const)('output pages on %s', (dialect) => {
  const tmp = tempDir();
  let t: TestProxy;
  let drop: (() => Promise<void>) | undefined;
  let n = 0;
  async function newPool(): Promise<{ agent: Api; admin: Api }> {
    const pool = `out-${++n}`;
    return { agent: new Api(t.proxy.url, await t.proxy.createToken({ pool })), admin: new Api(t.proxy.url, await t.proxy.createToken({ pool, admin: true })) };
  }
  /** A leased listing job of a new pool. */
  async function leased() {
    const { agent, admin } = await newPool();
    const id = await admin.enqueue({ type: 'listAccounts', resource: 'dir' });
    const [l] = await agent.lease({ resources: ['dir'] });
    const ndjson = (head: unknown, lines: string, headers: Record<string, string> = {}) =>
      agent.post(`/v1/agent/jobs/${id}/output`, undefined, { raw: `${JSON.stringify(head)}\n${lines}`, headers: { ...NDJSON, ...headers } });
    return { agent, admin, id, token: l.leaseToken as string, ndjson };
  }

  beforeAll(async () => {
    let store: string | undefined;
    if (dialect === 'postgres') {
      const db = await createTestDatabase();
      store = db.url;
      drop = db.drop;
    }
    t = await startTestProxy({ ...(store ? { store } : { dir: tmp.dir }), leaseTtlMs: 600_000, bodyLimitBytes: 64 * 1024 });
  });
  afterAll(async () => {
    await t.stop();
    await drop?.();
    tmp.cleanup();
  });

  it('stores NDJSON pages as sent, idempotent by seq, read back in seq order beside JSON-form pages', async () => {
    const { agent, admin, id, token, ndjson } = await leased();
    expect((await ndjson({ leaseToken: token, seq: 32 }, '{"n": 4}\n')).body).toEqual({ status: 'accepted' });
    expect((await ndjson({ leaseToken: token, seq: 0 }, '{"n":1}\n{"n":2}\n')).body).toEqual({ status: 'accepted' });
    expect((await ndjson({ leaseToken: token, seq: 0 }, '{"n":1}\n{"n":2}\n')).body).toEqual({ status: 'duplicate' });
    // The older form, from an agent of the previous release, in the same listing.
    expect((await agent.post(`/v1/agent/jobs/${id}/output`, { leaseToken: token, seq: 16, records: [{ n: 3 }] })).body).toEqual({ status: 'accepted' });
    // No final newline, \r\n line ends and an empty page are all fine.
    expect((await ndjson({ leaseToken: token, seq: 48 }, '{"n":5}\r\n["s","t"]')).status).toBe(200);
    expect((await ndjson({ leaseToken: token, seq: 49 }, '')).status).toBe(200);
    const out = await admin.get(`/v1/jobs/${id}/output`);
    expect(out.headers.get('content-type')).toContain('application/x-ndjson');
    expect(out.text).toBe('{"n":1}\n{"n":2}\n{"n":3}\n{"n": 4}\n{"n":5}\r\n["s","t"]\n');
    expect((await admin.get(`/v1/jobs/${id}`)).body.outputRecords).toBe(6);
  });

  it('takes a gzip-compressed page, and refuses one that inflates beyond the body limit', async () => {
    const { agent, admin, id, token } = await leased();
    const post = (body: Buffer, encoding = 'gzip') =>
      fetch(`${t.proxy.url}/v1/agent/jobs/${id}/output`, { method: 'POST', headers: { authorization: `Bearer ${agent.token}`, ...NDJSON, 'content-encoding': encoding }, body });
    const page = `${JSON.stringify({ leaseToken: token, seq: 0 })}\n${Array.from({ length: 100 }, (_, i) => `{"id":"u${i}"}`).join('\n')}\n`;
    expect((await post(gzipSync(page))).status).toBe(200);
    // 1 MB of records compresses to ~1 KB: over the 64 KiB limit once inflated.
    const bomb = `${JSON.stringify({ leaseToken: token, seq: 16 })}\n${`{"x":"${'a'.repeat(1000)}"}\n`.repeat(1000)}`;
    const refused = await post(gzipSync(bomb));
    expect(refused.status).toBe(413);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('too_large');
    expect((await post(Buffer.from(page), 'br')).status).toBe(400);
    // Claimed gzip that is not (as the fuzzer sends), also with a content-type no parser takes: 400, and the proxy stays up.
    expect((await post(Buffer.from(page))).status).toBe(400);
    const odd = await fetch(`${t.proxy.url}/v1/agent/jobs/${id}/output`, { method: 'POST', headers: { authorization: `Bearer ${agent.token}`, 'content-type': 'text/csv', 'content-encoding': 'gzip' }, body: 'a,b\n' });
    expect(odd.status).toBe(400);
    expect((await t.root.get('/healthz')).status).toBe(200);
    expect((await admin.get(`/v1/jobs/${id}`)).body.outputRecords).toBe(100);
  });

  it('refuses pages whose lines are not one JSON value each, naming the line and quoting nothing', async () => {
    const { admin, id, token, ndjson } = await leased();
    const head = { leaseToken: token, seq: 0 };
    const cases: Array<[string, unknown, string]> = [
      ['glued records', head, '{"a":1}{"b":2}\n'],
      ['a cut-off record', head, '{"a":1}\n{"b":[2,\n'],
      ['a raw newline in a string', head, '{"a":"secret-x\ny"}\n'],
      ['an empty line', head, '{"a":1}\n\n{"b":2}\n'],
      ['a line that is no value', head, 'secret-x\n'],
      ['a bracket closed twice', head, '{"a":1}}\n'],
      ['nested too deep', head, `${'['.repeat(70)}${']'.repeat(70)}\n`],
      ['too many records', head, '1\n'.repeat(10_001)],
      ['a head without seq', { leaseToken: token }, '{"a":1}\n'],
      ['a head with another field', { ...head, records: [] }, '{"a":1}\n'],
    ];
    for (const [what, h, lines] of cases) {
      const r = await ndjson(h, lines);
      expect([what, r.status, r.body?.error?.code]).toEqual([what, 400, 'invalid_request']);
      expect(r.text).not.toContain('secret-x');
    }
    expect((await admin.get(`/v1/jobs/${id}`)).body.outputRecords).toBe(0);
  });

  it('fences NDJSON pages by lease token: a stale token is 409 lease_lost, another pool’s job 404, nothing stored', async () => {
    const { agent, admin, id, token, ndjson } = await leased();
    expect((await ndjson({ leaseToken: token, seq: 0 }, '{"attempt":1}\n')).status).toBe(200);
    await agent.post('/v1/agent/release', { agentId: 'agent-1', leases: [{ jobId: id, leaseToken: token }] });
    const [again] = await agent.lease({ resources: ['dir'] });
    const stale = await ndjson({ leaseToken: token, seq: 16 }, '{"attempt":1}\n');
    expect([stale.status, stale.body.error.code]).toEqual([409, 'lease_lost']);
    const other = await newPool();
    const foreign = await other.agent.post(`/v1/agent/jobs/${id}/output`, undefined, { raw: `${JSON.stringify({ leaseToken: again.leaseToken, seq: 0 })}\n{"x":1}\n`, headers: NDJSON });
    expect([foreign.status, foreign.body.error.code]).toEqual([404, 'not_found']);
    expect((await ndjson({ leaseToken: again.leaseToken, seq: 0 }, '{"attempt":2}\n')).status).toBe(200);
    expect((await admin.get(`/v1/jobs/${id}/output`)).text).toBe('{"attempt":2}\n');
  });

  it('stores and serves non-ASCII records byte for byte (framed as bytes: no multi-byte character is taken for a quote)', async () => {
    const { admin, id, token, ndjson } = await leased();
    const lines = '{"name":"Zoë Ünal","cn":"日本語\\"ü","e":"🙂"}\n["é]",{"k":"\\\\"}]\n';
    expect((await ndjson({ leaseToken: token, seq: 0 }, lines)).status).toBe(200);
    expect((await admin.get(`/v1/jobs/${id}`)).body.outputRecords).toBe(2);
    const served = (await admin.get(`/v1/jobs/${id}/output`)).text;
    expect(served).toBe(lines);
    expect(served.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown)).toEqual([{ name: 'Zoë Ünal', cn: '日本語"ü', e: '🙂' }, ['é]', { k: '\\' }]]);
  });

  it('takes a page up to the body limit and counts its records; one byte over is 413', async () => {
    const { id, token, ndjson } = await leased();
    const head = JSON.stringify({ leaseToken: token, seq: 0 }) + '\n';
    const line = `{"pad":"${'p'.repeat(58)}"}\n`;
    const fits = Math.floor((64 * 1024 - head.length) / line.length);
    expect((await ndjson({ leaseToken: token, seq: 0 }, line.repeat(fits))).status).toBe(200);
    // The same size as a full page, whose head ("seq":16) is one byte longer: 64 KiB + 1.
    const over = await ndjson({ leaseToken: token, seq: 16 }, line.repeat(fits) + 'x'.repeat(64 * 1024 - head.length - fits * line.length - 3) + '\n1\n');
    expect([over.status, over.body.error.code]).toEqual([413, 'too_large']);
    expect((await t.root.get(`/v1/jobs/${id}`)).body.outputRecords).toBe(fits);
  });

  if (dialect === 'sqlite') {
    it('serves a page stored as a JSON array by an earlier release as NDJSON', async () => {
      const { admin, id, token } = await leased();
      const db = new Database(join(tmp.dir, 'proxy.db'));
      try {
        db.prepare('INSERT INTO outpost_output (job_id, lease_token, seq, records, count, bytes) VALUES (?, ?, ?, ?, ?, ?)').run(id, token, 0, '[{"old":1},{"old":2}]', 2, 21);
      } finally {
        db.close();
      }
      expect((await admin.get(`/v1/jobs/${id}/output`)).text).toBe('{"old":1}\n{"old":2}\n');
    });
  }
});

describe('NDJSON framing', () => {
  it('counts record lines; a final newline opens no line', () => {
    expect(countRecordLines('', 64)).toBe(0);
    expect(countRecordLines('1\n', 64)).toBe(1);
    expect(countRecordLines('{"a":"x\\"}"}\n[1,{"b":"]"}]\n"s\\\\"', 64)).toBe(3);
    expect(countRecordLines(Buffer.from('{"é":"ü\\"}"}\n"日本"\n'), 64)).toBe(2);
  });
});
