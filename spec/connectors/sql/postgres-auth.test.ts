import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import { toWireError } from '../../../lib/util/errors.js';
import { startPgCluster, type PgCluster } from '../../fixtures/sql-pg.js';
import { opContext, sqlDeps } from '../../fixtures/sql.js';
import { makeTestPki, type TestPki } from '../../fixtures/tls.js';

/** Password authentication and TLS need a server of our own: the shared one trusts every local login and has no TLS. */
describe('postgres: password and TLS (throwaway cluster)', () => {
  let pg: PgCluster;
  let pki: TestPki;
  let wrongPki: TestPki;
  const dir = mkdtempSync(join(tmpdir(), 'outpost-sql-auth-'));
  const pwFile = (name: string, value: string) => {
    const f = join(dir, name);
    writeFileSync(f, `${value}\n`);
    return f;
  };
  beforeAll(async () => {
    pki = makeTestPki();
    wrongPki = makeTestPki();
    pg = await startPgCluster({ password: 'Cluster-Right-Pw-42', pki });
  }, 60_000);
  afterAll(async () => {
    await pg?.stop();
    for (const d of [dir, pki?.dir, wrongPki?.dir]) if (d) rmSync(d, { recursive: true, force: true });
  });
  const resource = (passwordFile: string, tls: Record<string, unknown>) => ({
    kind: 'postgres',
    connection: { host: pg.host, port: pg.port, user: 'postgres', database: 'postgres', passwordFile },
    tls,
    connectTimeoutMs: 5000,
  });

  it('a wrong password is invalid_credentials, and the password appears nowhere', async () => {
    const wrong = 'Wrong-Cluster-Pw-0815';
    const deps = sqlDeps(true);
    const c = createSqlConnector('pw', resource(pwFile('wrong', wrong), { caFile: pki.caCertFile }), deps);
    try {
      let error: unknown;
      await c.checkResource({}, opContext().ctx).catch((e: unknown) => (error = e));
      expect(error).toMatchObject({ code: 'invalid_credentials', retryable: false });
      expect((error as Error).message).toContain('28P01');
      expect(JSON.stringify(toWireError(error))).not.toContain(wrong);
      expect((error as Error).message).not.toContain(wrong);
      expect(deps.lines.join('\n')).not.toContain(wrong);
    } finally {
      await c.close();
    }
  });

  it('the right password over TLS verified with tls.caFile works', async () => {
    const c = createSqlConnector('tls', resource(pwFile('right', pg.password), { caFile: pki.caCertFile }), sqlDeps());
    try {
      const res = await c.checkResource({}, opContext().ctx);
      expect(res).toMatchObject({ ok: true, details: { dialect: 'postgres', model: 'native' } });
      const o = opContext();
      await c.listAccounts({}, o.ctx);
      expect(o.records).toContainEqual(expect.objectContaining({ id: 'postgres', enabled: true }));
    } finally {
      await c.close();
    }
  });

  it('a certificate from another CA, or for another name, is a tls_error', async () => {
    for (const tls of [{ caFile: wrongPki.caCertFile }, { caFile: pki.caCertFile, serverName: 'db.elsewhere.example' }, {}]) {
      const c = createSqlConnector('badtls', resource(pwFile('right2', pg.password), tls), sqlDeps());
      try {
        await expect(c.checkResource({}, opContext().ctx)).rejects.toMatchObject({ code: 'tls_error', retryable: false });
      } finally {
        await c.close();
      }
    }
  });
});
