import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createServer, request, type Server } from 'node:http';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { startSlapd, type Slapd } from '../fixtures/slapd.js';
import { scratchPostgres, type ScratchDatabase } from '../fixtures/sql.js';
import { AGENT_SUITE_PROXY, startTestProxy, tempDir, type TestProxy } from '../fixtures/proxy-server.js';
import { startAgent, stopAgents, testAgentConfig } from '../agent/harness.js';

/**
 * Listings through an in-process integration-proxy and agent with the real
 * connectors, against slapd and PostgreSQL: every record arrives once, in
 * order, in the NDJSON form, and the agent never has more than its pipeline
 * (3 pages) out at once, however long the listing. A relay between agent and
 * proxy counts the output calls open at any moment and the bytes they carry.
 */
interface Relay {
  url: string;
  outputCalls: number;
  peakOpen: number;
  peakOpenBytes: number;
  ndjsonCalls: number;
  close(): Promise<void>;
}

async function startRelay(target: string): Promise<Relay> {
  const to = new URL(target);
  let open = 0;
  let openBytes = 0;
  const relay: Relay = { url: '', outputCalls: 0, peakOpen: 0, peakOpenBytes: 0, ndjsonCalls: 0, close: async () => {} };
  const server: Server = createServer((req, res) => {
    const output = /\/output$/.test(req.url ?? '');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (output) {
        relay.outputCalls++;
        if (String(req.headers['content-type']).startsWith('application/x-ndjson')) relay.ndjsonCalls++;
        open++;
        openBytes += body.length;
        relay.peakOpen = Math.max(relay.peakOpen, open);
        relay.peakOpenBytes = Math.max(relay.peakOpenBytes, openBytes);
      }
      const upstream = request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        answer.on('end', () => {
          if (!output) return;
          open--;
          openBytes -= body.length;
        });
      });
      upstream.on('error', () => res.destroy());
      // A client gone before its answer (a stopped agent's parked poll) closes the upstream call too,
      // as a direct connection would: else the proxy would hand that poll a job nobody reads.
      res.on('close', () => {
        if (!res.writableFinished) upstream.destroy();
      });
      upstream.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  relay.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  relay.close = () => new Promise((r) => server.close(() => r()));
  server.keepAliveTimeout = 1000;
  return relay;
}

const tmp = tempDir('outpost-listings-');
let proxy: TestProxy;
let relay: Relay;

beforeAll(async () => {
  proxy = await startTestProxy(AGENT_SUITE_PROXY);
  relay = await startRelay(proxy.url);
});
afterAll(async () => {
  await stopAgents();
  await relay?.close();
  await proxy?.stop();
  tmp.cleanup();
});

/** Runs one listAccounts job on `resource` through relay → proxy; the records read back. */
async function listThroughAgent(resource: Record<string, unknown>, timeoutMs = 60_000): Promise<{ records: Array<Record<string, unknown>>; result: unknown }> {
  await stopAgents();
  await startAgent(testAgentConfig({ url: relay.url, agentToken: proxy.agentToken }, { resources: { dir: resource as never } }));
  const id = await proxy.enqueue({ type: 'listAccounts', resource: 'dir', timeoutMs: 600_000 });
  const job = await proxy.done(id, timeoutMs);
  expect(job).toMatchObject({ status: 'succeeded' });
  const text = (await proxy.admin.get(`/v1/jobs/${id}/output`)).text;
  expect((job as { outputRecords?: number }).outputRecords).toBe(text.split('\n').length - 1);
  return { records: text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>), result: job.result };
}

describe('LDAP listing through proxy + agent (slapd)', () => {
  let slapd: Slapd;
  beforeAll(async () => {
    slapd = await startSlapd({ users: 3000 });
  });
  afterAll(async () => {
    await slapd?.stop();
  });

  it('delivers every account in order with at most 3 pages out at once', async () => {
    const passwordFile = join(tmp.dir, 'ldap.pw');
    writeFileSync(passwordFile, `${slapd.svcPassword}\n`);
    const before = { calls: relay.outputCalls };
    relay.peakOpen = 0;
    const { records, result } = await listThroughAgent({ kind: 'ldap', url: slapd.url, bindDN: slapd.svcDN, passwordFile, baseDN: slapd.baseDN, userBase: slapd.peopleDN, pageSize: 100 });
    const uids = records.map((r) => r.name).filter((u): u is string => typeof u === 'string' && u.startsWith('user'));
    expect(uids).toHaveLength(3000);
    expect(new Set(uids).size).toBe(3000);
    expect(result).toMatchObject({ records: records.length });
    // 30 pages or more: ten times the pipeline, and never more than 3 out.
    expect(relay.outputCalls - before.calls).toBeGreaterThanOrEqual(30);
    expect(relay.ndjsonCalls).toBeGreaterThanOrEqual(30);
    expect(relay.peakOpen).toBeGreaterThanOrEqual(1);
    expect(relay.peakOpen).toBeLessThanOrEqual(3);
  });
});

describe('SQL listing through proxy + agent (PostgreSQL)', () => {
  let db: ScratchDatabase;
  beforeAll(async () => {
    const url = process.env.PG_URL;
    if (!url) throw new Error('PG_URL is not set: source .services/env');
    db = await scratchPostgres(url);
    await db.admin.raw('create table accounts (id bigint primary key, username text not null, email text, active boolean not null, pad text)');
    await db.admin.raw(`insert into accounts select g, 'user' || g, 'user' || g || '@example.org', g % 7 <> 0, repeat('x', 200) from generate_series(1, 20000) g`);
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('delivers 20 000 rows in order; bytes out stay within 3 pages of the 1 MiB budget', async () => {
    relay.peakOpen = 0;
    relay.peakOpenBytes = 0;
    const before = relay.outputCalls;
    const { records, result } = await listThroughAgent({
      kind: 'postgres',
      connection: { url: db.url },
      model: 'queries',
      pageSize: 500,
      statements: { listAccounts: 'select id, username, email, active, pad from accounts order by id' },
      columns: { uid: 'username', enabled: 'active' },
    });
    expect(result).toMatchObject({ records: 20000 });
    expect(records.map((r) => Number(r.id))).toEqual(Array.from({ length: 20000 }, (_, i) => i + 1));
    expect(records[6]).toMatchObject({ id: '7', uid: 'user7', enabled: false, email: 'user7@example.org' });
    // ~5.5 MB in 40 pages: the listing is far bigger than what the pipeline holds.
    expect(relay.outputCalls - before).toBe(40);
    expect(relay.peakOpen).toBeLessThanOrEqual(3);
    expect(relay.peakOpenBytes).toBeLessThanOrEqual(3 * (1024 * 1024 + 4096));
  });
});
