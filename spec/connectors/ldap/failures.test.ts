import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { writeFileSync } from 'node:fs';
import { connect as connectTcp, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createLdapConnector, parseLdapConfig } from '../../../lib/connectors/ldap/index.js';
import { LdapPool } from '../../../lib/connectors/ldap/pool.js';
import { silentLogger } from '../../../lib/log/index.js';
import { FakeClock } from '../../fixtures/fake-clock.js';
import type { Connector } from '../../../lib/connectors/types.js';
import { toWireError } from '../../../lib/util/errors.js';
import { freePort } from '../../fixtures/net.js';
import { startSlapd, type Slapd } from '../../fixtures/slapd.js';
import { capturingLogger, caught, ctx, deps } from './helpers.js';

const WRONG_PASSWORD = 'Wr0ng-Pa55word-xyz';
let slapd: Slapd;
const logs = capturingLogger();
const open: Connector[] = [];

function connector(over: Record<string, unknown> = {}): Connector {
  const c = createLdapConnector(
    'corp',
    { url: slapd.url, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN, timeoutMs: 5000, connectTimeoutMs: 2000, ...over },
    deps(logs.log),
  );
  open.push(c);
  return c;
}

beforeAll(async () => {
  slapd = await startSlapd({ users: 3000 });
}, 60_000);

afterAll(async () => {
  for (const c of open) await c.close();
  await slapd?.stop();
});

describe('LDAP connector failures', () => {
  it('a wrong bind password is invalid_credentials, not retryable, and never shown', async () => {
    const ldap = connector({ password: WRONG_PASSWORD });
    for (const op of [() => ldap.checkResource({}, ctx()), () => ldap.listAccounts({}, ctx())]) {
      const err = await caught(op);
      expect(err).toMatchObject({ code: 'invalid_credentials', retryable: false });
      expect(err.message).toContain('invalid credentials');
      expect(err.message).not.toContain(WRONG_PASSWORD);
      expect(JSON.stringify(toWireError(err))).not.toContain(WRONG_PASSWORD);
    }
    expect(logs.text()).not.toContain(WRONG_PASSWORD);
    expect(logs.text()).not.toContain(slapd.svcPassword);
  });

  it('a rejected password is not sent again for a while (no AD lockout); a rotated one is tried at once', async () => {
    let connections = 0;
    const piped: Socket[] = [];
    const counter: Server = createServer((c) => {
      connections++;
      const up = connectTcp(slapd.port, '127.0.0.1');
      piped.push(c, up);
      c.pipe(up).pipe(c);
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
    });
    const port = await new Promise<number>((r) => counter.listen(0, '127.0.0.1', () => r((counter.address() as { port: number }).port)));
    const pwFile = join(slapd.dir, 'rotating.pw');
    writeFileSync(pwFile, WRONG_PASSWORD);
    const clock = new FakeClock();
    const ldap = createLdapConnector(
      'corp',
      { url: `ldap://127.0.0.1:${port}`, bindDN: slapd.svcDN, passwordFile: pwFile, baseDN: slapd.baseDN },
      { ...deps(logs.log), clock },
    );
    open.push(ldap);
    try {
      for (let i = 0; i < 3; i++) await expect(ldap.checkResource({}, ctx())).rejects.toMatchObject({ code: 'invalid_credentials', retryable: false });
      expect(connections).toBe(1);
      await clock.advance(61_000);
      await expect(ldap.checkResource({}, ctx())).rejects.toMatchObject({ code: 'invalid_credentials' });
      expect(connections).toBe(2);
      writeFileSync(pwFile, slapd.svcPassword);
      expect((await ldap.checkResource({}, ctx())).ok).toBe(true);
      expect(connections).toBe(3);
    } finally {
      await ldap.close();
      for (const sock of piped) sock.destroy();
      await new Promise((r) => counter.close(r));
    }
  });

  it('a bind DN that does not exist is invalid_credentials too', async () => {
    const err = await caught(() => connector({ bindDN: `cn=nobody,${slapd.suffix}` }).checkResource({}, ctx()));
    expect(err).toMatchObject({ code: 'invalid_credentials', retryable: false });
  });

  it('an account without write access gets permission_denied, not retryable', async () => {
    const reader = connector({ bindDN: slapd.userDN(1), password: 'pass' });
    expect((await reader.checkResource({}, ctx())).ok).toBe(true);
    const err = await caught(() => reader.setAccountEnabled({ accountId: slapd.userDN(2), enabled: false }, ctx()));
    expect(err).toMatchObject({ code: 'permission_denied', retryable: false });
    expect(err.message).toContain('insufficient access rights [50]');
  });

  it('StartTLS against a server without TLS is a non-retryable tls_error', async () => {
    const err = await caught(() => connector({ startTls: true }).checkResource({}, ctx()));
    expect(err).toMatchObject({ code: 'tls_error', retryable: false });
    expect(err.message).toMatch(/^ldap corp: starttls failed: StartTLS refused by the server \[\d+\]/);
  });

  it('nothing listening is a retryable unavailable', async () => {
    const port = await freePort();
    const err = await caught(() => connector({ url: `ldap://127.0.0.1:${port}` }).checkResource({}, ctx()));
    expect(err).toMatchObject({ code: 'unavailable', retryable: true });
    expect(err.message).toContain('connection refused');
  });

  it('a server that never answers is a retryable timeout', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    const port = await new Promise<number>((r) => silent.listen(0, '127.0.0.1', () => r((silent.address() as { port: number }).port)));
    try {
      const err = await caught(() => connector({ url: `ldap://127.0.0.1:${port}`, timeoutMs: 300 }).checkResource({}, ctx()));
      expect(err).toMatchObject({ code: 'timeout', retryable: true });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it('an ldaps:// port that never completes the handshake is a connect timeout', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((sock) => sockets.push(sock));
    const port = await new Promise<number>((r) => silent.listen(0, '127.0.0.1', () => r((silent.address() as { port: number }).port)));
    try {
      const err = await caught(() => connector({ url: `ldaps://127.0.0.1:${port}`, connectTimeoutMs: 300 }).checkResource({}, ctx()));
      expect(err).toMatchObject({ code: 'timeout', retryable: true });
      expect(err.message).toBe('ldap corp: connect failed: connect did not finish within connectTimeoutMs');
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it('an abort while binding to a silent server ends at once with the abort reason', async () => {
    const sockets: Socket[] = [];
    const silent: Server = createServer((s) => sockets.push(s));
    const port = await new Promise<number>((r) => silent.listen(0, '127.0.0.1', () => r((silent.address() as { port: number }).port)));
    try {
      const c = ctx();
      setTimeout(() => c.controller.abort(), 100);
      const err = await caught(() => connector({ url: `ldap://127.0.0.1:${port}` }).checkResource({}, c));
      // A bare abort(): the wire form is `aborted` whether the reason is a DOMException or our own error.
      expect(toWireError(err)).toMatchObject({ code: 'aborted', retryable: true });
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => silent.close(r));
    }
  });

  it('slapd killed mid-listing gives a retryable failure; after a restart the next listing succeeds', async () => {
    const ldap = connector({ pageSize: 100 });
    expect((await ldap.checkResource({}, ctx())).ok).toBe(true);
    const c = ctx({ keep: false, onPage: (n) => (n === 3 ? slapd.kill() : undefined) });
    const err = await caught(() => ldap.listAccounts({}, c));
    expect(err).toMatchObject({ code: 'unavailable', retryable: true });
    expect(err.message).toMatch(/^ldap corp: search failed: connection (closed|reset) by the server/);
    expect(c.pages.length).toBe(3);
    // While it is down: refused, still retryable.
    await expect(ldap.listAccounts({}, ctx({ keep: false }))).rejects.toMatchObject({ code: 'unavailable', retryable: true });
    await slapd.start();
    const again = ctx({ keep: false });
    expect(await ldap.listAccounts({}, again)).toMatchObject({ records: 3001 });
  });

  it('reuses a bound connection, but not one idle longer than idleTimeoutMs', async () => {
    const clock = new FakeClock();
    const s = parseLdapConfig('corp', { url: slapd.url, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN, idleTimeoutMs: 60_000 }, deps());
    const pool = new LdapPool(s, silentLogger(), clock);
    try {
      const signal = new AbortController().signal;
      const grab = () => pool.use(signal, 'search', async (c) => c);
      const first = await grab();
      await clock.advance(59_000);
      expect(await grab()).toBe(first);
      await clock.advance(60_000);
      const third = await grab();
      expect(third).not.toBe(first);
      expect(third.isBound).toBe(true);
      expect(pool.size).toBe(1);
    } finally {
      await pool.close();
    }
  });

  it('a pooled connection dropped by a restart is replaced transparently', async () => {
    const ldap = connector();
    expect((await ldap.listEntitlements({}, ctx())).records).toBe(0);
    await slapd.kill();
    await slapd.start();
    expect((await ldap.checkResource({}, ctx())).ok).toBe(true);
  });
});
