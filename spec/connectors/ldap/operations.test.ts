import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLdapConnector } from '../../../lib/connectors/ldap/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { AccountRecord, EntitlementRecord, GrantRecord } from '../../../lib/protocol/operations.js';
import { startSlapd, type Slapd } from '../../fixtures/slapd.js';
import { capturingLogger, ctx, deps } from './helpers.js';

const USERS = 10_000;
const BIG = 3_000;
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let slapd: Slapd;
let ldap: Connector;
const logs = capturingLogger();

beforeAll(async () => {
  slapd = await startSlapd({
    users: USERS,
    groups: [
      { cn: 'staff', kind: 'groupOfNames', members: [1, 2, 3], description: 'All staff' },
      { cn: 'admins', kind: 'groupOfUniqueNames', members: [4, 5] },
      { cn: 'unix', kind: 'posixGroup', members: [6, 7] },
      { cn: 'big', kind: 'groupOfNames', members: range(0, BIG) },
    ],
  });
  const pwFile = join(slapd.dir, 'svc.pw');
  writeFileSync(pwFile, slapd.svcPassword + '\n');
  ldap = createLdapConnector('corp', { kind: 'ldap', url: slapd.url, bindDN: slapd.svcDN, passwordFile: pwFile, baseDN: slapd.baseDN }, deps(logs.log));
}, 60_000);

afterAll(async () => {
  await ldap?.close();
  await slapd?.stop();
});

describe('LDAP connector against slapd', () => {
  it('checkResource binds and reads the root DSE', async () => {
    const r = await ldap.checkResource({}, ctx());
    expect(r.ok).toBe(true);
    expect(r.latencyMs).toBeGreaterThanOrEqual(0);
    expect(r.details).toMatchObject({ pagedResults: true, vendor: 'OpenLDAP' });
    expect(r.details.namingContexts).toEqual([slapd.suffix]);
  });

  it(`lists ${USERS} accounts page by page (paging is mandatory: soft limit 1000)`, async () => {
    const c = ctx();
    const res = await ldap.listAccounts({}, c);
    expect(res.records).toBe(USERS + 1);
    expect(c.pages.length).toBeGreaterThanOrEqual(Math.ceil(USERS / 500));
    for (const p of c.pages) expect(p.length).toBeLessThanOrEqual(500);
    const all = c.records<AccountRecord>();
    expect(all).toHaveLength(USERS + 1);
    const byId = new Map(all.map((a) => [a.id.toLowerCase(), a]));
    expect(byId.size).toBe(USERS + 1);
    for (const i of [0, 1, 9, 10, 4321, USERS - 1]) {
      const a = byId.get(slapd.userDN(i).toLowerCase())!;
      expect(a).toBeDefined();
      expect(a.name).toBe(slapd.uid(i));
      expect(a.email).toBe(`${slapd.uid(i)}@example.org`);
      expect(a.enabled).toBe(i % 10 !== 0);
      expect(a.uid).toMatch(UUID_RE);
      expect(a.attributes).toMatchObject({ cn: `User ${i}`, givenName: 'User' });
    }
    expect(all.filter((a) => !a.enabled)).toHaveLength(USERS / 10);
    expect(new Set(all.map((a) => a.uid)).size).toBe(USERS + 1);
    expect(all.some((a) => a.id.includes('ou=outside'))).toBe(false);
  });

  it('copies configured accountAttributes, never a password attribute', async () => {
    const own = createLdapConnector(
      'corp2',
      { url: slapd.url, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN, userFilter: `(uid=${slapd.uid(3)})`, accountAttributes: ['sn', 'userPassword'] },
      deps(),
    );
    try {
      const c = ctx();
      expect(await own.listAccounts({}, c)).toMatchObject({ records: 1 });
      expect(c.records<AccountRecord>()[0]!.attributes).toEqual({ cn: 'User 3', givenName: 'User', sn: '3' });
    } finally {
      await own.close();
    }
  });

  it('honours the payload page size', async () => {
    const c = ctx({ keep: false });
    const res = await ldap.listAccounts({ pageSize: 2000 }, c);
    expect(res.records).toBe(USERS + 1);
    expect(c.pages.length).toBe(Math.ceil((USERS + 1) / 2000));
  });

  it('lists entitlements of every group class', async () => {
    const c = ctx();
    expect(await ldap.listEntitlements({}, c)).toEqual({ records: 4 });
    const groups = c.records<EntitlementRecord>();
    expect(groups.map((g) => g.name).sort()).toEqual(['admins', 'big', 'staff', 'unix']);
    const staff = groups.find((g) => g.name === 'staff')!;
    expect(staff).toMatchObject({ id: slapd.groupDN('staff'), kind: 'group', description: 'All staff' });
    expect(staff.uid).toMatch(UUID_RE);
    expect(groups.find((g) => g.name === 'admins')!.description).toBeNull();
  });

  it(`lists grants in full, including a ${BIG}-member group and posix memberUid`, async () => {
    const c = ctx();
    const res = await ldap.listGrants({}, c);
    const grants = c.records<GrantRecord>();
    expect(res.records).toBe(3 + 2 + 2 + BIG);
    expect(grants).toHaveLength(res.records);
    for (const p of c.pages) expect(p.length).toBeLessThanOrEqual(500);
    const of = (cn: string) => grants.filter((g) => g.entitlementId === slapd.groupDN(cn)).map((g) => g.accountId.toLowerCase());
    expect(new Set(of('big')).size).toBe(BIG);
    expect(of('big')).toContain(slapd.userDN(BIG - 1).toLowerCase());
    expect(of('unix').sort()).toEqual([slapd.userDN(6), slapd.userDN(7)].map((d) => d.toLowerCase()));
    expect(of('admins').sort()).toEqual([slapd.userDN(4), slapd.userDN(5)].map((d) => d.toLowerCase()));
  });

  it.each([
    ['groupOfNames', 'staff', 'member', () => slapd.userDN(100)],
    ['groupOfUniqueNames', 'admins', 'uniqueMember', () => slapd.userDN(100)],
    ['posixGroup', 'unix', 'memberUid', () => slapd.uid(100)],
  ])('grant and revoke on a %s are idempotent', async (_kind, cn, attr, value) => {
    const p = { accountId: slapd.userDN(100), entitlementId: slapd.groupDN(cn) };
    expect(await ldap.grant(p, ctx())).toEqual({ changed: true });
    expect(await ldap.grant(p, ctx())).toEqual({ changed: false });
    expect(await members(cn, attr)).toContain(value());
    expect(await ldap.revoke(p, ctx())).toEqual({ changed: true });
    expect(await ldap.revoke(p, ctx())).toEqual({ changed: false });
    expect(await members(cn, attr)).not.toContain(value());
  });

  it('grants an account whose DN has an escaped comma', async () => {
    const p = { accountId: slapd.commaDN, entitlementId: slapd.groupDN('staff') };
    expect(await ldap.grant(p, ctx())).toEqual({ changed: true });
    const c = ctx();
    await ldap.listGrants({}, c);
    const staff = c.records<GrantRecord>().filter((g) => g.entitlementId === slapd.groupDN('staff'));
    expect(staff.map((g) => g.accountId)).toContain(slapd.commaDN);
    const accounts = ctx();
    await ldap.listAccounts({}, accounts);
    expect(accounts.records<AccountRecord>().find((a) => a.name === 'jsmith')!.id).toBe(slapd.commaDN);
    expect(await ldap.revoke(p, ctx())).toEqual({ changed: true });
  });

  it('grant of an unknown group or account is not_found; a non-group is forbidden', async () => {
    const bad = [
      { accountId: slapd.userDN(1), entitlementId: slapd.groupDN('nope') },
      { accountId: `uid=ghost,${slapd.peopleDN}`, entitlementId: slapd.groupDN('staff') },
    ];
    for (const p of bad) await expect(ldap.grant(p, ctx())).rejects.toMatchObject({ code: 'not_found', retryable: false });
    await expect(ldap.grant({ accountId: slapd.userDN(1), entitlementId: slapd.userDN(2) }, ctx())).rejects.toMatchObject({
      code: 'forbidden',
      retryable: false,
    });
  });

  it('disables and enables an account idempotently (ppolicy pwdAccountLockedTime)', async () => {
    const id = slapd.userDN(11);
    expect(await ldap.setAccountEnabled({ accountId: id, enabled: false }, ctx())).toEqual({ changed: true });
    expect(await ldap.setAccountEnabled({ accountId: id, enabled: false }, ctx())).toEqual({ changed: false });
    expect(await lockedTime(id)).toBe('000001010000Z');
    expect(await ldap.setAccountEnabled({ accountId: id, enabled: true }, ctx())).toEqual({ changed: true });
    expect(await ldap.setAccountEnabled({ accountId: id, enabled: true }, ctx())).toEqual({ changed: false });
    expect(await lockedTime(id)).toBeNull();
    // A seeded locked account (index 20) enables once.
    expect(await ldap.setAccountEnabled({ accountId: slapd.userDN(20), enabled: true }, ctx())).toEqual({ changed: true });
    await expect(ldap.setAccountEnabled({ accountId: `uid=ghost,${slapd.peopleDN}`, enabled: true }, ctx())).rejects.toMatchObject({
      code: 'not_found',
    });
  });

  it('uses a configured disabled attribute instead of ppolicy', async () => {
    const own = createLdapConnector(
      'corp3',
      {
        url: slapd.url, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN,
        userFilter: `(uid=${slapd.uid(12)})`, openldap: { disabledAttribute: 'employeeType', disabledValue: 'disabled' },
      },
      deps(),
    );
    try {
      const id = slapd.userDN(12);
      const enabled = async () => {
        const c = ctx();
        await own.listAccounts({}, c);
        return c.records<AccountRecord>()[0]!.enabled;
      };
      expect(await enabled()).toBe(true);
      expect(await own.setAccountEnabled({ accountId: id, enabled: false }, ctx())).toEqual({ changed: true });
      expect(await enabled()).toBe(false);
      expect(await lockedTime(id)).toBeNull();
      expect(await own.setAccountEnabled({ accountId: id, enabled: true }, ctx())).toEqual({ changed: true });
      expect(await own.setAccountEnabled({ accountId: id, enabled: true }, ctx())).toEqual({ changed: false });
      expect(await enabled()).toBe(true);
    } finally {
      await own.close();
    }
  });

  it('ldap.search returns entries, honours scope, attributes and sizeLimit, and never passwords', async () => {
    const c = ctx();
    const r = await ldap.extra['ldap.search']!({ filter: '(uid=user0000*)', attributes: ['uid', 'mail', 'userPassword'] }, c);
    expect(r).toEqual({ records: 10 });
    const e = c.records()[0]!;
    expect(Object.keys(e).sort()).toEqual(['dn', 'mail', 'uid']);
    const all = ctx();
    await ldap.extra['ldap.search']!({ base: slapd.peopleDN, filter: `(uid=${slapd.uid(3)})`, attributes: ['*'] }, all);
    expect(all.records()).toHaveLength(1);
    expect(all.records()[0]).not.toHaveProperty('userPassword');
    expect(JSON.stringify(all.records())).not.toContain('pass"');
    const limited = ctx();
    expect(await ldap.extra['ldap.search']!({ filter: '(objectClass=inetOrgPerson)', sizeLimit: 1500, attributes: ['uid'] }, limited)).toEqual({
      records: 1500,
    });
    const one = ctx();
    expect(await ldap.extra['ldap.search']!({ filter: '(objectClass=*)', scope: 'one', attributes: ['ou'] }, one)).toEqual({ records: 2 });
  });

  it('never puts the bind password in a log line', () => {
    expect(logs.text()).not.toContain(slapd.svcPassword);
  });
});

async function members(cn: string, attr: string): Promise<string[]> {
  const c = ctx();
  await ldap.extra['ldap.search']!({ base: slapd.groupDN(cn), scope: 'base', filter: '(objectClass=*)', attributes: [attr] }, c);
  const v = c.records()[0]![attr] as string | string[] | undefined;
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

async function lockedTime(dn: string): Promise<string | null> {
  const c = ctx();
  await ldap.extra['ldap.search']!({ base: dn, scope: 'base', filter: '(objectClass=*)', attributes: ['pwdAccountLockedTime'] }, c);
  const v = c.records()[0]!.pwdAccountLockedTime;
  return Array.isArray(v) ? (v[0] ?? null) : ((v as string | undefined) ?? null);
}
