import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createLdapConnector } from '../../../lib/connectors/ldap/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { AccountRecord, EntitlementRecord, GrantRecord } from '../../../lib/protocol/operations.js';
import { toWireError } from '../../../lib/util/errors.js';
import { startRangeRelay } from '../../fixtures/ldap-range-relay.js';
import { SAMBA_BIG, SAMBA_USERS, startSamba, type SambaDc } from '../../fixtures/samba.js';
import { capturingLogger, caught, ctx, deps } from './helpers.js';

/**
 * Active Directory behaviour against a real Samba AD DC (fixed ports 389/636,
 * so everything AD lives in this one file and runs in order).
 */
let dc: SambaDc;
let ad: Connector;
const logs = capturingLogger();
const open: Connector[] = [];
const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function connector(over: Record<string, unknown> = {}): Connector {
  const c = createLdapConnector(
    'corp-ad',
    { kind: 'ldap', flavor: 'ad', url: dc.ldapsUrl, bindDN: dc.adminDN, password: dc.adminPassword, baseDN: dc.ouDN, tls: { caFile: dc.caFile }, ...over },
    deps(logs.log),
  );
  open.push(c);
  return c;
}

beforeAll(async () => {
  dc = await startSamba();
  ad = connector();
}, 600_000);

afterAll(async () => {
  for (const c of open) await c.close();
  await dc?.stop();
}, 30_000);

const uacOf = async (dn: string) => {
  const c = ctx();
  await ad.extra['ldap.search']!({ base: dn, scope: 'base', filter: '(objectClass=*)', attributes: ['userAccountControl'] }, c);
  return Number(c.records()[0]!.userAccountControl);
};

describe('LDAP connector against Samba AD', () => {
  it('binds over LDAPS with the DC CA and recognises Active Directory', async () => {
    const r = await ad.checkResource({}, ctx());
    expect(r.ok).toBe(true);
    expect(r.details).toMatchObject({ pagedResults: true, vendor: expect.any(String), flavor: 'ad' });
  });

  it('lists accounts with objectGUID as uid and UAC bit 2 as state', async () => {
    const c = ctx();
    const res = await ad.listAccounts({ pageSize: 200 }, c);
    expect(res.records).toBe(SAMBA_USERS);
    expect(c.pages.length).toBe(Math.ceil(SAMBA_USERS / 200));
    const all = c.records<AccountRecord>();
    const one = all.find((a) => a.name === dc.sam(5))!;
    expect(one).toMatchObject({ id: dc.userDN(5), email: `${dc.sam(5)}@test.lan`, enabled: true });
    expect(one.uid).toMatch(GUID_RE);
    // Samba's own rendering of the same GUID: byte order is right.
    expect(one.uid).toBe(dc.ldbValue(dc.userDN(5), 'objectGUID'));
    expect(one.attributes).toMatchObject({ userPrincipalName: `${dc.sam(5)}@test.lan`, userAccountControl: 0x220 });
    expect(all.filter((a) => !a.enabled)).toHaveLength(SAMBA_USERS / 10);
    expect(new Set(all.map((a) => a.uid)).size).toBe(SAMBA_USERS);
  });

  it('lists groups as entitlements', async () => {
    const c = ctx();
    expect(await ad.listEntitlements({}, c)).toEqual({ records: 3 });
    const big = c.records<EntitlementRecord>().find((g) => g.name === 'big')!;
    expect(big).toMatchObject({ id: dc.groupDN('big'), kind: 'group', description: 'big group' });
    expect(big.uid).toBe(dc.ldbValue(dc.groupDN('big'), 'objectGUID'));
  });

  it(`reads a ${SAMBA_BIG}-member group whole through ranged retrieval`, async () => {
    // Samba honours an explicit range (it only does not cut plain reads), so this is AD's protocol.
    const probe = ctx();
    await ad.extra['ldap.search']!({ base: dc.groupDN('big'), scope: 'base', filter: '(objectClass=group)', attributes: ['member;range=0-1499'] }, probe);
    expect(Object.keys(probe.records()[0]!)).toContain('member;range=0-1499');
    expect(probe.records()[0]!['member;range=0-1499']).toHaveLength(1500);

    for (const rangeSize of [1500, 333]) {
      const c = ctx();
      const res = await connector({ rangeSize }).listGrants({}, c);
      const grants = c.records<GrantRecord>();
      expect(res.records).toBe(SAMBA_BIG + 3);
      const big = grants.filter((g) => g.entitlementId === dc.groupDN('big'));
      expect(new Set(big.map((g) => g.accountId.toLowerCase())).size).toBe(SAMBA_BIG);
      expect(big.map((g) => g.accountId)).toContain(dc.userDN(SAMBA_BIG - 1));
      for (const p of c.pages) expect(p.length).toBeLessThanOrEqual(500);
    }
  });

  it('follows ranges when the server cuts below the requested range (an AD-like relay, MaxValRange 400)', async () => {
    const relay = await startRangeRelay({ host: '127.0.0.1', port: 389 }, 400);
    try {
      const viaRelay = connector({ url: relay.url, tls: undefined });
      // A plain read is cut as AD cuts it: the relay works.
      const plain = ctx();
      await viaRelay.extra['ldap.search']!({ base: dc.groupDN('big'), scope: 'base', filter: '(objectClass=*)', attributes: ['member'] }, plain);
      expect(plain.records()[0]!['member;range=0-399']).toHaveLength(400);
      const c = ctx();
      expect(await viaRelay.listGrants({}, c)).toEqual({ records: SAMBA_BIG + 3 });
      const big = c.records<GrantRecord>().filter((g) => g.entitlementId === dc.groupDN('big'));
      expect(new Set(big.map((g) => g.accountId.toLowerCase())).size).toBe(SAMBA_BIG);
      // The plain read, then 0-1499 → 0-399, 400-1899 → 400-799, 800-2299 → 800-1199; 1200-* (400 values) needs no cut.
      expect(relay.cuts).toBe(1 + Math.ceil(SAMBA_BIG / 400) - 1);
    } finally {
      await relay.close();
    }
  });

  it('an abort while a large group is written stops at that page', async () => {
    const c = ctx({ onPage: (n) => (n === 1 ? c.controller.abort() : undefined) });
    expect(toWireError(await caught(() => connector({ pageSize: 100 }).listGrants({}, c))).code).toBe('aborted');
    expect(c.pages).toHaveLength(1);
  });

  it('disables and enables leaving the other UAC bits intact, idempotently', async () => {
    const dn = dc.userDN(1);
    expect(await uacOf(dn)).toBe(0x10220);
    expect(await ad.setAccountEnabled({ accountId: dn, enabled: false }, ctx())).toEqual({ changed: true });
    expect(await ad.setAccountEnabled({ accountId: dn, enabled: false }, ctx())).toEqual({ changed: false });
    expect(await uacOf(dn)).toBe(0x10222);
    expect(await ad.setAccountEnabled({ accountId: dn, enabled: true }, ctx())).toEqual({ changed: true });
    expect(await ad.setAccountEnabled({ accountId: dn, enabled: true }, ctx())).toEqual({ changed: false });
    expect(await uacOf(dn)).toBe(0x10220);
  });

  it('grants and revokes idempotently', async () => {
    const p = { accountId: dc.userDN(7), entitlementId: dc.groupDN('staff') };
    expect(await ad.grant(p, ctx())).toEqual({ changed: true });
    expect(await ad.grant(p, ctx())).toEqual({ changed: false });
    expect(await ad.revoke(p, ctx())).toEqual({ changed: true });
    expect(await ad.revoke(p, ctx())).toEqual({ changed: false });
    await expect(ad.grant({ accountId: dc.userDN(7), entitlementId: dc.groupDN('nope') }, ctx())).rejects.toMatchObject({ code: 'not_found' });
    await expect(ad.grant({ accountId: dc.adminDN, entitlementId: dc.groupDN('staff') }, ctx())).rejects.toMatchObject({ code: 'invalid_request' });
  });

  it('ldap.search renders objectGUID and objectSid as strings', async () => {
    const c = ctx();
    await ad.extra['ldap.search']!({ filter: `(sAMAccountName=${dc.sam(2)})`, attributes: ['objectGUID', 'objectSid', 'unicodePwd'] }, c);
    const e = c.records()[0]!;
    expect(e.objectGUID).toBe(dc.ldbValue(dc.userDN(2), 'objectGUID'));
    expect(e.objectSid).toBe(dc.ldbValue(dc.userDN(2), 'objectSid'));
    expect(e).not.toHaveProperty('unicodePwd');
  });

  it('refuses changes to the base OU and groups as accounts, and filters on password or LAPS attributes', async () => {
    const uac = await uacOf(dc.ouDN).catch(() => NaN);
    for (const accountId of [dc.ouDN, dc.groupDN('staff')]) {
      const err = await caught(() => ad.setAccountEnabled({ accountId, enabled: false }, ctx()));
      expect(err).toMatchObject({ code: 'forbidden', retryable: false });
    }
    expect(await uacOf(dc.ouDN).catch(() => NaN)).toEqual(uac);
    await expect(ad.grant({ accountId: dc.userDN(7), entitlementId: dc.ouDN }, ctx())).rejects.toMatchObject({ code: 'forbidden' });
    for (const filter of [`(&(sAMAccountName=${dc.sam(2)})(unicodePwd=*))`, '(ms-Mcs-AdmPwd=*)', '(|(cn=x)(msLAPS-Password=*))', '(:1.2.840.113556.1.4.803:=2)']) {
      const c = ctx();
      await expect(ad.extra['ldap.search']!({ filter, attributes: ['cn'] }, c)).rejects.toMatchObject({ code: 'forbidden', retryable: false });
      expect(c.pages).toEqual([]);
    }
    // The AD bitwise matching rule on a named attribute stays usable.
    await expect(ad.extra['ldap.search']!({ filter: '(userAccountControl:1.2.840.113556.1.4.803:=2)', attributes: ['cn'] }, ctx())).resolves.toEqual({
      records: expect.any(Number),
    });
  });

  it('a wrong password is invalid_credentials, not retryable, without the password', async () => {
    const wrong = 'Not-The-Adm1n-Pw';
    const err = await caught(() => connector({ password: wrong }).checkResource({}, ctx()));
    expect(err).toMatchObject({ code: 'invalid_credentials', retryable: false });
    expect(err.message).toContain('52e');
    expect(JSON.stringify(toWireError(err))).not.toContain(wrong);
    expect(logs.text()).not.toContain(wrong);
    expect(logs.text()).not.toContain(dc.adminPassword);
  });

  it('the DC self-signed CA is not trusted without tls.caFile', async () => {
    const err = await caught(() => connector({ tls: undefined }).checkResource({}, ctx()));
    expect(err).toMatchObject({ code: 'tls_error', retryable: false });
  });
});
