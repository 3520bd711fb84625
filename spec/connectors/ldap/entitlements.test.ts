import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createLdapConnector } from '../../../lib/connectors/ldap/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { EntitlementRecord } from '../../../lib/protocol/operations.js';
import { toWireError } from '../../../lib/util/errors.js';
import { startSlapd, type Slapd } from '../../fixtures/slapd.js';
import { caught, ctx, deps } from './helpers.js';

let slapd: Slapd;
let ldap: Connector;
/** A connector whose filters match everything: the object-class and base checks must hold on their own. */
let loose: Connector;
const strayDN = () => `cn=stray,${slapd.peopleDN}`;

const base = () => ({ url: slapd.url, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN });
const connector = (name: string, extra: Record<string, unknown> = {}) => createLdapConnector(name, { ...base(), ...extra }, deps());

/** Read as the directory admin through the ldapsearch CLI, outside the connector. */
function ldapsearch(dn: string, attr: string): string[] {
  const out = execFileSync('ldapsearch', ['-x', '-LLL', '-o', 'ldif-wrap=no', '-H', slapd.url, '-D', slapd.adminDN, '-w', slapd.adminPassword, '-s', 'base', '-b', dn, '(objectClass=*)', attr], {
    encoding: 'utf8',
  });
  return out
    .split('\n')
    .filter((l) => l.toLowerCase().startsWith(`${attr.toLowerCase()}:`))
    .map((l) => l.slice(attr.length + 1).trim());
}

beforeAll(async () => {
  slapd = await startSlapd({
    users: 20,
    groups: [
      { cn: 'staff', kind: 'groupOfNames', members: [1] },
      { cn: 'admins', kind: 'groupOfUniqueNames', members: [1] },
      { cn: 'app-read', kind: 'groupOfNames', members: [1] },
      { cn: 'app-write', kind: 'groupOfNames', members: [1] },
    ],
  });
  // A group outside ou=groups, and an employeeNumber to filter on.
  execFileSync('ldapmodify', ['-x', '-H', slapd.url, '-D', slapd.adminDN, '-w', slapd.adminPassword], {
    input:
      `dn: ${strayDN()}\nchangetype: add\nobjectClass: groupOfNames\ncn: stray\nmember: ${slapd.userDN(1)}\n\n` +
      `dn: ${slapd.userDN(3)}\nchangetype: modify\nadd: employeeNumber\nemployeeNumber: 4711\n`,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  ldap = connector('corp');
  loose = connector('loose', { userFilter: '(objectClass=*)', groupFilter: '(objectClass=*)' });
}, 60_000);

afterAll(async () => {
  await ldap?.close();
  await loose?.close();
  await slapd?.stop();
});

describe('LDAP: changes act only on accounts and groups', () => {
  it.each([
    ['the base entry', () => slapd.baseDN, /accountId is the base entry \(baseDN\) itself/],
    ['an ou container', () => slapd.peopleDN, /accountId is a container \(objectClass organizationalunit\)/],
    ['the groups container', () => slapd.groupsDN, /accountId is a container/],
    ['a group', () => slapd.groupDN('staff'), /accountId is a group, not an account/],
  ])('setAccountEnabled on %s is refused, and nothing is written', async (_what, dn, rule) => {
    for (const c of [ldap, loose]) {
      for (const enabled of [false, true]) {
        const err = await caught(() => c.setAccountEnabled({ accountId: dn(), enabled }, ctx()));
        expect(toWireError(err)).toEqual({ code: 'forbidden', message: expect.stringMatching(rule), retryable: false });
      }
    }
    expect(ldapsearch(dn(), 'pwdAccountLockedTime')).toEqual([]);
  });

  it('setAccountEnabled still works on an account', async () => {
    expect(await ldap.setAccountEnabled({ accountId: slapd.userDN(5), enabled: false }, ctx())).toEqual({ changed: true });
    expect(ldapsearch(slapd.userDN(5), 'pwdAccountLockedTime')).toEqual(['000001010000Z']);
    expect(await ldap.setAccountEnabled({ accountId: slapd.userDN(5), enabled: true }, ctx())).toEqual({ changed: true });
  });

  it.each([
    ['an account', () => slapd.userDN(2), /entitlementId is not a group/],
    ['an ou container', () => slapd.groupsDN, /entitlementId is a container/],
    ['the base entry', () => slapd.baseDN, /entitlementId is the base entry/],
  ])('grant and revoke of %s as the entitlement are refused', async (_what, dn, rule) => {
    for (const c of [ldap, loose]) {
      for (const op of ['grant', 'revoke'] as const) {
        const err = await caught(() => c[op]({ accountId: slapd.userDN(4), entitlementId: dn() }, ctx()));
        expect(toWireError(err)).toEqual({ code: 'forbidden', message: expect.stringMatching(rule), retryable: false });
      }
    }
    expect(ldapsearch(dn(), 'member')).not.toContain(slapd.userDN(4));
  });

  it('a group as the account, and a group outside groupBase, are refused', async () => {
    const err = await caught(() => ldap.grant({ accountId: slapd.groupDN('admins'), entitlementId: slapd.groupDN('staff') }, ctx()));
    expect(err).toMatchObject({ code: 'forbidden', message: expect.stringContaining('accountId is a group, not an account') });
    const scoped = connector('scoped', { groupBase: slapd.groupsDN, userBase: slapd.peopleDN });
    try {
      const outside = await caught(() => scoped.grant({ accountId: slapd.userDN(4), entitlementId: strayDN() }, ctx()));
      expect(outside).toMatchObject({ code: 'forbidden', message: expect.stringContaining('entitlementId lies outside groupBase') });
      expect(await scoped.grant({ accountId: slapd.userDN(4), entitlementId: slapd.groupDN('staff') }, ctx())).toEqual({ changed: true });
      expect(ldapsearch(slapd.groupDN('staff'), 'member')).toContain(slapd.userDN(4));
      expect(await scoped.revoke({ accountId: slapd.userDN(4), entitlementId: slapd.groupDN('staff') }, ctx())).toEqual({ changed: true });
    } finally {
      await scoped.close();
    }
    expect(ldapsearch(strayDN(), 'member')).toEqual([slapd.userDN(1)]);
  });

  it('entitlements include/exclude patterns narrow listEntitlements, grant and revoke alike', async () => {
    const narrowed = connector('narrow', {
      entitlements: { include: [`cn=app-*,${slapd.groupsDN}`, 'CN=STAFF,*'], exclude: ['*write*'] },
    });
    try {
      const c = ctx();
      await narrowed.listEntitlements({}, c);
      expect(c.records<EntitlementRecord>().map((e) => e.name).sort()).toEqual(['app-read', 'staff']);
      const excluded = await caught(() => narrowed.grant({ accountId: slapd.userDN(4), entitlementId: slapd.groupDN('app-write') }, ctx()));
      expect(excluded).toMatchObject({ code: 'forbidden', retryable: false, message: expect.stringContaining('resources.narrow.entitlements') });
      const notIncluded = await caught(() => narrowed.revoke({ accountId: slapd.userDN(1), entitlementId: slapd.groupDN('admins') }, ctx()));
      expect(notIncluded).toMatchObject({ code: 'forbidden' });
      expect(ldapsearch(slapd.groupDN('app-write'), 'member')).toEqual([slapd.userDN(1)]);
      expect(ldapsearch(slapd.groupDN('admins'), 'uniqueMember')).toEqual([slapd.userDN(1)]);
      const p = { accountId: slapd.userDN(4), entitlementId: slapd.groupDN('app-read') };
      expect(await narrowed.grant(p, ctx())).toEqual({ changed: true });
      expect(await narrowed.revoke(p, ctx())).toEqual({ changed: true });
    } finally {
      await narrowed.close();
    }
  });

  it('listEntitlements lists no container and not the base, even with a filter that matches them', async () => {
    const c = ctx();
    await loose.listEntitlements({}, c);
    expect(c.records<EntitlementRecord>().map((e) => e.name).sort()).toEqual(['admins', 'app-read', 'app-write', 'staff', 'stray']);
  });
});

describe('LDAP: ldap.search filters name only returnable attributes', () => {
  const search = (c: Connector, p: Record<string, unknown>, o = ctx()) => c.extra['ldap.search']!(p, o) as Promise<{ records: number }>;

  it.each([
    ['(userPassword=pass)'],
    ['(&(uid=user00001)(userPassword=pass))'],
    ['(|(uid=nobody)(userPassword=*))'],
    ['(!(userPassword=guess))'],
    ['(&(uid=user00001)(!(|(cn=x)(userPassword=p*s))))'],
    ['(userPassword=p*)'],
    ['(userPassword>=a)'],
    ['(userPassword~=pass)'],
    ['(userPassword:caseExactMatch:=pass)'],
    ['(userPassword:dn:octetStringMatch:=pass)'],
    ['(USERPASSWORD=pass)'],
    ['(unicodePwd=*)'],
    ['(ms-Mcs-AdmPwd=x)'],
    ['(msLAPS-Password=*)'],
    ['(msLAPS-EncryptedPassword=*)'],
    ['(pwdHistory=*)'],
    ['(:octetStringMatch:=pass)'],
    ['(:dn:caseExactMatch:=pass)'],
  ])('refuses %s before searching', async (filter) => {
    const o = ctx();
    const err = await caught(() => search(ldap, { filter, attributes: ['uid'] }, o));
    expect(toWireError(err)).toMatchObject({ code: 'forbidden', retryable: false });
    expect(err.message).toMatch(/a password attribute|extensible match without an attribute/);
    expect(err.message).not.toContain('pass)');
    expect(o.pages).toEqual([]);
  });

  it('still serves filters on returnable attributes, including extensible and substring forms', async () => {
    expect(await search(ldap, { filter: `(uid=${slapd.uid(1)})`, attributes: ['uid'] })).toEqual({ records: 1 });
    expect(await search(ldap, { filter: '(&(objectClass=inetOrgPerson)(cn=User 1*))', attributes: ['1.1'] })).toEqual({ records: 11 });
    expect(await search(ldap, { filter: '(ou:dn:=people)', scope: 'one', base: slapd.peopleDN, attributes: ['uid'] })).toEqual({ records: 22 }); // 20 users, Smith and the stray group
  });

  it('with search.attributes, a filter may name only those (and objectClass), and only those come back', async () => {
    const narrow = connector('narrow', { search: { attributes: ['uid', 'cn', 'mail'] } });
    try {
      for (const filter of ['(sn=1)', '(&(uid=user00001)(givenName=User))', '(employeeNumber=4711)', '(sn:caseIgnoreMatch:=1)']) {
        const err = await caught(() => search(narrow, { filter }));
        expect(err).toMatchObject({ code: 'forbidden', retryable: false, message: expect.stringContaining('names an attribute this resource never returns (search.attributes)') });
        expect(err.message).not.toMatch(/\bsn\b|givenName|employeeNumber/i);
      }
      const o = ctx();
      expect(await search(narrow, { filter: `(&(objectClass=inetOrgPerson)(uid=${slapd.uid(3)}))`, attributes: ['*', '+'] }, o)).toEqual({ records: 1 });
      expect(Object.keys(o.records()[0]!).sort()).toEqual(['cn', 'dn', 'mail', 'objectClass', 'uid']);
      await expect(search(narrow, { filter: '(uid=x)', attributes: ['sn', 'userPassword'] })).rejects.toMatchObject({ code: 'forbidden' });
    } finally {
      await narrow.close();
    }
  });

  it('search.forbiddenAttributes adds patterns: never named in a filter, never returned', async () => {
    const own = connector('own', { search: { forbiddenAttributes: ['employee*', 'Description'] } });
    try {
      const err = await caught(() => search(own, { filter: '(employeeNumber=4711)' }));
      expect(err).toMatchObject({ code: 'forbidden', message: expect.stringContaining('names a password attribute') });
      expect(err.message).not.toMatch(/employeeNumber|4711/i);
      const o = ctx();
      await search(own, { filter: `(uid=${slapd.uid(3)})`, attributes: ['*'] }, o);
      expect(o.records()[0]).not.toHaveProperty('employeeNumber');
      expect(o.records()[0]).toHaveProperty('sn');
      // The default connector returns it: the pattern made the difference.
      const d = ctx();
      await search(ldap, { filter: `(uid=${slapd.uid(3)})`, attributes: ['employeeNumber'] }, d);
      expect(d.records()[0]).toMatchObject({ employeeNumber: '4711' });
    } finally {
      await own.close();
    }
  });

  it('rejects a dangling escape in a configured pattern at load time', () => {
    expect(() => connector('bad', { search: { forbiddenAttributes: ['x\\'] } })).toThrow(expect.objectContaining({ code: 'config_error' }));
    expect(() => connector('bad', { entitlements: { include: [''] } })).toThrow(expect.objectContaining({ code: 'config_error' }));
    expect(() => connector('bad', { entitlements: { incl: ['x'] } })).toThrow(expect.objectContaining({ code: 'config_error' }));
  });
});
