import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { rmSync } from 'node:fs';
import { createLdapConnector } from '../../../lib/connectors/ldap/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import { makeTestPki, type TestPki } from '../../fixtures/tls.js';
import { startSlapd, type Slapd } from '../../fixtures/slapd.js';
import { caught, ctx, deps } from './helpers.js';

let slapd: Slapd;
let pki: TestPki;
let otherCa: TestPki;
const open: Connector[] = [];

function connector(over: Record<string, unknown>): Connector {
  const c = createLdapConnector(
    'corp',
    { url: slapd.ldapsUrl, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN, tls: { caFile: pki.caCertFile }, ...over },
    deps(),
  );
  open.push(c);
  return c;
}

beforeAll(async () => {
  pki = makeTestPki();
  otherCa = makeTestPki();
  slapd = await startSlapd({ users: 50, tls: { certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caCertFile } });
}, 60_000);

afterAll(async () => {
  for (const c of open) await c.close();
  await slapd?.stop();
  for (const p of [pki, otherCa]) if (p) rmSync(p.dir, { recursive: true, force: true });
});

describe('LDAP connector over TLS', () => {
  it('binds and lists over ldaps:// with the test CA', async () => {
    const ldap = connector({});
    expect((await ldap.checkResource({}, ctx())).ok).toBe(true);
    expect(await ldap.listAccounts({}, ctx({ keep: false }))).toMatchObject({ records: 51 });
  });

  it('binds over ldaps://localhost too (the certificate names both)', async () => {
    const ldap = connector({ url: slapd.ldapsUrl!.replace('127.0.0.1', 'localhost') });
    expect((await ldap.checkResource({}, ctx())).ok).toBe(true);
  });

  it('upgrades ldap:// with StartTLS', async () => {
    const ldap = connector({ url: slapd.url, startTls: true });
    expect((await ldap.checkResource({}, ctx())).ok).toBe(true);
    expect(await ldap.listEntitlements({}, ctx())).toEqual({ records: 0 });
  });

  it('a CA that did not sign the server certificate is a clear, non-retryable tls_error', async () => {
    for (const url of [slapd.ldapsUrl, slapd.url]) {
      const err = await caught(() => connector({ url, startTls: url === slapd.url, tls: { caFile: otherCa.caCertFile } }).checkResource({}, ctx()));
      expect(err).toMatchObject({ code: 'tls_error', retryable: false });
      expect(err.message).toMatch(/TLS certificate not trusted/);
      expect(err.message).not.toMatch(/can't contact|refused/i);
    }
  });

  it('no CA at all (system store only) is tls_error too', async () => {
    const err = await caught(() => connector({ tls: undefined }).checkResource({}, ctx()));
    expect(err).toMatchObject({ code: 'tls_error', retryable: false });
  });

  it('a host name the certificate does not carry is a host name mismatch', async () => {
    const err = await caught(() => connector({ tls: { caFile: pki.caCertFile, serverName: 'ldap.wrong.example' } }).checkResource({}, ctx()));
    expect(err).toMatchObject({ code: 'tls_error', retryable: false });
    expect(err.message).toMatch(/host name mismatch/);
  });

  it('an expired certificate says so', async () => {
    // A second slapd whose certificate has expired (same CA).
    const { execFileSync } = await import('node:child_process');
    const run = (args: string[]) => execFileSync('openssl', args, { cwd: pki.dir, stdio: 'pipe' });
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'old.key', '-out', 'old.csr']);
    // OpenSSL 3.0 has no -not_after; a negative validity ends it a day before it starts.
    run(['x509', '-req', '-in', 'old.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-extfile', 'ext.cnf', '-days', '-1', '-out', 'old.crt']);
    const old = await startSlapd({ users: 1, tls: { certFile: `${pki.dir}/old.crt`, keyFile: `${pki.dir}/old.key`, caFile: pki.caCertFile } });
    try {
      const err = await caught(() => connector({ url: old.ldapsUrl }).checkResource({}, ctx()));
      expect(err).toMatchObject({ code: 'tls_error', retryable: false });
      expect(err.message).toMatch(/certificate expired/);
    } finally {
      await old.stop();
    }
  });
});
