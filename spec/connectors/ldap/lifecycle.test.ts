import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { rmSync } from 'node:fs';
import { Attribute, Change, Client } from 'ldapts';
import { createLdapConnector } from '../../../lib/connectors/ldap/index.js';
import { passwordModifyValue, withPassword } from '../../../lib/connectors/ldap/passwords.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { AccountRecord, GrantRecord } from '../../../lib/protocol/operations.js';
import { OutpostError, toWireError } from '../../../lib/util/errors.js';
import { waitFor } from '../../fixtures/net.js';
import { startSlapd, type Slapd } from '../../fixtures/slapd.js';
import { makeTestPki, type TestPki } from '../../fixtures/tls.js';
import { capturingLogger, caught, ctx, deps } from './helpers.js';

/** The account lifecycle on OpenLDAP (slapd with ppolicy and memberof), over LDAPS. */
let slapd: Slapd;
let pki: TestPki;
let admin: Client;
const logs = capturingLogger();
const open: Connector[] = [];
const SECRET = 'N3w-Secret-Passw0rd!';

function connector(over: Record<string, unknown> = {}, url?: string): Connector {
  const c = createLdapConnector(
    'corp',
    {
      url: url ?? slapd.ldapsUrl, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN, tls: { caFile: pki.caCertFile },
      accounts: { create: { container: slapd.peopleDN }, writableAttributes: ['telephoneNumber', 'title', 'description'] },
      delta: { clockSkewMs: 0 },
      ...over,
    },
    deps(logs.log),
  );
  open.push(c);
  return c;
}

async function canBind(dn: string, password: string): Promise<boolean> {
  const c = new Client({ url: slapd.ldapsUrl!, tlsOptions: { ca: pki.caCert } });
  try {
    await c.bind(dn, password);
    return true;
  } catch {
    return false;
  } finally {
    await c.unbind().catch(() => undefined);
  }
}

async function adminRead(dn: string, attrs: string[]): Promise<Record<string, unknown>> {
  const r = await admin.search(dn, { scope: 'base', attributes: attrs });
  return r.searchEntries[0] as Record<string, unknown>;
}

/** Waits until the wall clock is in a later second than `ms` (modifyTimestamp has whole seconds). */
const nextSecond = (ms: number) => waitFor(() => Math.floor(Date.now() / 1000) > Math.floor(ms / 1000), 3000);

beforeAll(async () => {
  pki = makeTestPki();
  slapd = await startSlapd({
    users: 30,
    tls: { certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caCertFile },
    groups: [{ cn: 'l3', kind: 'groupOfNames', members: [1] }, { cn: 'ga', kind: 'groupOfNames', members: [2] }, { cn: 'gb', kind: 'groupOfNames', members: [3] }],
  });
  admin = new Client({ url: slapd.url });
  await admin.bind(slapd.adminDN, slapd.adminPassword);
  // l1 ⊃ l2 ⊃ l3 ∋ user1; ga and gb contain each other (a cycle).
  await admin.add(slapd.groupDN('l2'), { objectClass: 'groupOfNames', cn: 'l2', member: slapd.groupDN('l3') });
  await admin.add(slapd.groupDN('l1'), { objectClass: 'groupOfNames', cn: 'l1', member: slapd.groupDN('l2') });
  await admin.modify(slapd.groupDN('ga'), new Change({ operation: 'add', modification: new Attribute({ type: 'member', values: [slapd.groupDN('gb')] }) }));
  await admin.modify(slapd.groupDN('gb'), new Change({ operation: 'add', modification: new Attribute({ type: 'member', values: [slapd.groupDN('ga')] }) }));
  await admin.add(`ou=departed,${slapd.baseDN}`, { objectClass: 'organizationalUnit', ou: 'departed' });
}, 60_000);

afterAll(async () => {
  for (const c of open) await c.close();
  await admin?.unbind().catch(() => undefined);
  await slapd?.stop();
  if (pki) rmSync(pki.dir, { recursive: true, force: true });
});

describe('account lifecycle on OpenLDAP', () => {
  it('creates an account once, reads it back, and answers changed: false for the same name', async () => {
    const ldap = connector();
    const payload = { account: { name: 'alice', email: 'alice@example.org', givenName: 'Alice', surname: 'Liddell', attributes: { title: 'Engineer' } } };
    const first = await ldap.createAccount!(payload, ctx());
    expect(first).toEqual({ changed: true, accountId: `uid=alice,${slapd.peopleDN}` });
    expect(await ldap.createAccount!(payload, ctx())).toEqual({ changed: false, accountId: first.accountId });
    const rec = await ldap.getAccount!({ accountId: first.accountId }, ctx());
    expect(rec).toMatchObject({ id: first.accountId, name: 'alice', email: 'alice@example.org', enabled: true, attributes: { cn: 'Alice Liddell', sn: 'Liddell' } });
    expect(rec.uid).toMatch(/^[0-9a-f-]{36}$/);
    // As listAccounts shows it.
    const c = ctx();
    await ldap.listAccounts({}, c);
    expect(c.records<AccountRecord>().find((a) => a.id === first.accountId)).toEqual(rec);
  });

  it('getAccount: not_found when absent, forbidden outside baseDN or for a group or container', async () => {
    const ldap = connector();
    expect(toWireError(await caught(() => ldap.getAccount!({ accountId: `uid=nobody,${slapd.peopleDN}` }, ctx())))).toMatchObject({ code: 'not_found', retryable: false });
    for (const [id, why] of [
      [`uid=hidden0,${slapd.outsideDN}`, 'lies outside baseDN'],
      [slapd.groupDN('l3'), 'is a group'],
      [slapd.peopleDN, 'is a container'],
      [slapd.baseDN, 'base entry'],
    ] as const) {
      const err = await caught(() => ldap.getAccount!({ accountId: id }, ctx()));
      expect(err).toMatchObject({ code: 'forbidden', retryable: false });
      expect(err.message).toContain(why);
    }
  });

  it('creates with a password through Password Modify: the server stores a hash, and the password binds', async () => {
    const ldap = connector();
    const r = await ldap.createAccount!({ account: { name: 'bob', surname: 'Builder' }, password: SECRET }, ctx());
    expect(r.changed).toBe(true);
    expect(await canBind(r.accountId, SECRET)).toBe(true);
    const stored = String(await adminRead(r.accountId, ['userPassword']).then((e) => e.userPassword));
    expect(stored).toMatch(/^\{[A-Z0-9-]+\}/);
    expect(stored).not.toContain(SECRET);
  });

  it('setPassword: Password Modify, a bind works, mustChange sets pwdReset (ppolicy), nothing leaks', async () => {
    const ldap = connector();
    const dn = slapd.userDN(4);
    expect(await ldap.setPassword!({ accountId: dn, password: SECRET, mustChange: true }, ctx())).toEqual({ changed: true });
    expect(await canBind(dn, SECRET)).toBe(true);
    const e = await adminRead(dn, ['userPassword', 'pwdReset']);
    expect(String(e.userPassword)).not.toContain(SECRET);
    expect(e.pwdReset).toBe('TRUE');
    await ldap.setPassword!({ accountId: dn, password: `${SECRET}2`, mustChange: false }, ctx());
    expect(await canBind(dn, `${SECRET}2`)).toBe(true);
    expect((await adminRead(dn, ['pwdReset'])).pwdReset).toEqual([]);
    expect(logs.text()).not.toContain(SECRET);
  });

  it('refuses passwords over plain ldap:// before sending anything', async () => {
    const plain = connector({}, slapd.url);
    for (const run of [
      () => plain.setPassword!({ accountId: slapd.userDN(5), password: SECRET }, ctx()),
      () => plain.createAccount!({ account: { name: 'carol' }, password: SECRET }, ctx()),
    ]) {
      const err = await caught(run);
      expect(toWireError(err)).toMatchObject({ code: 'forbidden', retryable: false });
      expect(err.message).toContain('only ever sent over LDAPS or StartTLS');
      expect(err.message).not.toContain(SECRET);
    }
    expect(await canBind(slapd.userDN(5), SECRET)).toBe(false);
    expect(await canBind(slapd.userDN(5), 'pass')).toBe(true);
  });

  it('StartTLS counts as encrypted: setPassword works over ldap:// with startTls', async () => {
    const ldap = connector({ startTls: true }, slapd.url);
    expect(await ldap.setPassword!({ accountId: slapd.userDN(10), password: SECRET }, ctx())).toEqual({ changed: true });
    expect(await canBind(slapd.userDN(10), SECRET)).toBe(true);
  });

  it('mustChange without the ppolicy overlay is refused before the password changes', async () => {
    const bare = await startSlapd({ users: 3, disabledEvery: 0, ppolicy: false, tls: { certFile: pki.certFile, keyFile: pki.keyFile, caFile: pki.caCertFile } });
    const ldap = createLdapConnector('bare', { url: bare.ldapsUrl, bindDN: bare.svcDN, password: bare.svcPassword, baseDN: bare.baseDN, tls: { caFile: pki.caCertFile } }, deps());
    try {
      const err = await caught(() => ldap.setPassword!({ accountId: bare.userDN(1), password: SECRET, mustChange: true }, ctx()));
      expect(err).toMatchObject({ code: 'invalid_request', retryable: false, message: expect.stringContaining('ppolicy') });
      const c = new Client({ url: bare.ldapsUrl!, tlsOptions: { ca: pki.caCert } });
      await expect(c.bind(bare.userDN(1), 'pass')).resolves.toBeUndefined();
      await c.unbind();
      expect(await ldap.setPassword!({ accountId: bare.userDN(1), password: SECRET }, ctx())).toEqual({ changed: true });
    } finally {
      await ldap.close();
      await bare.stop();
    }
  });

  it('a server error that quotes the password loses its text; the request value is RFC 3062 BER', async () => {
    const s = { name: 'corp' } as Parameters<typeof withPassword>[0];
    const quoting = new OutpostError('conflict', `ldap corp: modify failed: constraint violation [19] (value ${SECRET} rejected)`);
    const err = await caught(() => withPassword(s, SECRET, 'setting unicodePwd', () => Promise.reject(quoting)));
    expect(err).toMatchObject({ code: 'conflict', retryable: false });
    expect(err.message).not.toContain(SECRET);
    const plain = new OutpostError('conflict', 'ldap corp: modify failed: constraint violation [19]');
    expect(await caught(() => withPassword(s, SECRET, 'x', () => Promise.reject(plain)))).toBe(plain);
    // SEQUENCE { [0] "uid=x", [2] "p" }
    expect(passwordModifyValue('uid=x', 'p').toString('hex')).toBe('300a8005' + Buffer.from('uid=x').toString('hex') + '820170');
  });

  it('updateAccount writes allow-listed attributes only, and a no-op is changed: false', async () => {
    const ldap = connector();
    const dn = slapd.userDN(6);
    expect(await ldap.updateAccount!({ accountId: dn, attributes: { telephoneNumber: ['+1 555 0100', '+1 555 0101'], title: 'Boss' } }, ctx())).toEqual({ changed: true });
    expect(await ldap.updateAccount!({ accountId: dn, attributes: { telephoneNumber: ['+1 555 0101', '+1 555 0100'], title: 'Boss' } }, ctx())).toEqual({ changed: false });
    expect(await ldap.updateAccount!({ accountId: dn, attributes: { title: null } }, ctx())).toEqual({ changed: true });
    expect((await adminRead(dn, ['title'])).title).toEqual([]);
    for (const [attrs, rule] of [
      [{ userPassword: 'x' }, 'password attribute'],
      [{ objectClass: 'top' }, 'objectClass'],
      [{ uid: 'evil' }, 'naming attribute'],
      [{ uidNumber: '0' }, 'protected'],
      [{ mail: 'x@example.org' }, 'accounts.writableAttributes'],
    ] as const) {
      const err = await caught(() => ldap.updateAccount!({ accountId: dn, attributes: attrs as Record<string, string> }, ctx()));
      expect(err).toMatchObject({ code: 'forbidden', retryable: false });
      expect(err.message).toContain(rule);
    }
  });

  it('writes never touch the base, a container, a group, an entry outside baseDN or the bind account', async () => {
    const ldap = connector();
    for (const id of [slapd.baseDN, slapd.peopleDN, slapd.groupDN('l3'), `uid=hidden0,${slapd.outsideDN}`]) {
      expect(await caught(() => ldap.deleteAccount!({ accountId: id }, ctx()))).toMatchObject({ code: 'forbidden' });
      expect(await caught(() => ldap.updateAccount!({ accountId: id, attributes: { title: 'x' } }, ctx()))).toMatchObject({ code: 'forbidden' });
    }
    const self = connector({ bindDN: slapd.userDN(7), password: 'pass' });
    const err = await caught(() => self.deleteAccount!({ accountId: slapd.userDN(7) }, ctx()));
    expect(err).toMatchObject({ code: 'forbidden', message: expect.stringContaining("agent's own bind account") });
    expect(await caught(() => self.setPassword!({ accountId: slapd.userDN(7), password: SECRET }, ctx()))).toMatchObject({ code: 'forbidden' });
    expect(await canBind(slapd.userDN(7), 'pass')).toBe(true);
  });

  it('deleteAccount twice: true, then false', async () => {
    const ldap = connector();
    expect(await ldap.deleteAccount!({ accountId: slapd.userDN(8) }, ctx())).toEqual({ changed: true });
    expect(await ldap.deleteAccount!({ accountId: slapd.userDN(8) }, ctx())).toEqual({ changed: false });
  });

  it('deleteAccount in disable-and-move mode disables and moves, then answers changed: false', async () => {
    const targetDN = `ou=departed,${slapd.baseDN}`;
    const ldap = connector({ accounts: { delete: { mode: 'disable-and-move', targetDN } } });
    expect(await ldap.deleteAccount!({ accountId: slapd.userDN(9) }, ctx())).toEqual({ changed: true });
    const moved = `uid=${slapd.uid(9)},${targetDN}`;
    expect(await ldap.getAccount!({ accountId: moved }, ctx())).toMatchObject({ enabled: false });
    expect(await ldap.deleteAccount!({ accountId: slapd.userDN(9) }, ctx())).toEqual({ changed: false });
    expect(await ldap.deleteAccount!({ accountId: moved }, ctx())).toEqual({ changed: false });
  });

  it('a delta listing after changing one account lists only that account; deletions are unsupported', async () => {
    const ldap = connector();
    await nextSecond(Date.now());
    const full = ctx();
    const all = (await ldap.listAccounts({}, full)) as { records: number; cursor: string; delta: boolean; deletions: string };
    expect(all).toMatchObject({ delta: false, deletions: 'unsupported' });
    expect(all.records).toBeGreaterThan(25);
    expect(all.cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    await nextSecond(Date.now());
    await ldap.updateAccount!({ accountId: slapd.userDN(11), attributes: { description: 'changed' } }, ctx());
    const d = ctx();
    expect(await ldap.listAccounts({ since: all.cursor }, d)).toMatchObject({ records: 1, delta: true, deletions: 'unsupported' });
    expect(d.records<AccountRecord>().map((a) => a.id)).toEqual([slapd.userDN(11)]);
    // A cursor from another resource (other userBase) gives a full listing; a forged one is refused.
    const other = connector({ userBase: slapd.peopleDN });
    expect(await other.listAccounts({ since: all.cursor }, ctx())).toMatchObject({ delta: false });
    for (const since of ['not a cursor!', Buffer.from('{"v":1,"k":"openldap","src":"0000000000000000","t":-1}').toString('base64url'), 'e30']) {
      expect(await caught(() => ldap.listAccounts({ since }, ctx()))).toMatchObject({ code: 'invalid_request', retryable: false });
    }
  });

  it('listGrants {nested: true}: three levels with via, cycles end', async () => {
    const ldap = connector();
    const c = ctx();
    await ldap.listGrants({ nested: true }, c);
    const mine = (i: number) => c.records<GrantRecord>().filter((g) => g.accountId === slapd.userDN(i));
    expect(mine(1)).toEqual(
      expect.arrayContaining([
        { accountId: slapd.userDN(1), entitlementId: slapd.groupDN('l3') },
        { accountId: slapd.userDN(1), entitlementId: slapd.groupDN('l2'), via: slapd.groupDN('l3') },
        { accountId: slapd.userDN(1), entitlementId: slapd.groupDN('l1'), via: slapd.groupDN('l3') },
      ]),
    );
    expect(mine(1)).toHaveLength(3);
    expect(mine(2)).toEqual([
      { accountId: slapd.userDN(2), entitlementId: slapd.groupDN('ga') },
      { accountId: slapd.userDN(2), entitlementId: slapd.groupDN('gb'), via: slapd.groupDN('ga') },
    ]);
    // Groups are not listed as accounts.
    expect(c.records<GrantRecord>().some((g) => g.accountId.startsWith('cn='))).toBe(false);
    // Plain listGrants is unchanged: members as stored, no via.
    const flat = ctx();
    await ldap.listGrants({}, flat);
    expect(flat.records<GrantRecord>().some((g) => 'via' in g)).toBe(false);
  });

  it('refuses bad accounts config at startup', () => {
    const bad = (accounts: Record<string, unknown>) => caught(async () => connector({ accounts }));
    return Promise.all([
      bad({ writableAttributes: ['userPassword'] }).then((e) => expect(e).toMatchObject({ code: 'config_error', message: expect.stringContaining('password attribute') })),
      bad({ writableAttributes: ['memberOf'] }).then((e) => expect(e).toMatchObject({ code: 'config_error' })),
      bad({ create: { container: slapd.outsideDN } }).then((e) => expect(e).toMatchObject({ code: 'config_error', message: expect.stringContaining('userBase') })),
      bad({ delete: { mode: 'disable-and-move' } }).then((e) => expect(e).toMatchObject({ code: 'config_error', message: expect.stringContaining('targetDN') })),
      bad({ delete: { mode: 'disable-and-move', targetDN: slapd.outsideDN } }).then((e) => expect(e).toMatchObject({ code: 'config_error' })),
    ]);
  });
});
