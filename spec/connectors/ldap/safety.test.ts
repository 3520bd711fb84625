import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createLdapConnector } from '../../../lib/connectors/ldap/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { GrantRecord } from '../../../lib/protocol/operations.js';
import { OutpostError, toWireError } from '../../../lib/util/errors.js';
import { startSlapd, type Slapd } from '../../fixtures/slapd.js';
import { caught, ctx, deps } from './helpers.js';

let slapd: Slapd;
let ldap: Connector;

beforeAll(async () => {
  slapd = await startSlapd({
    users: 2000,
    groups: [
      { cn: 'staff', kind: 'groupOfNames', members: [1, 2] },
      // memberUid values that look like filter syntax must resolve to nothing, not to everyone.
      { cn: 'evil', kind: 'posixGroup', members: [] },
    ],
  });
  ldap = createLdapConnector(
    'corp',
    { url: slapd.url, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN, pageSize: 100, maxConnections: 2 },
    deps(),
  );
  // Hostile memberUid values, written as the directory admin (the connector only ever writes membership).
  const { execFileSync } = await import('node:child_process');
  execFileSync('ldapmodify', ['-x', '-H', slapd.url, '-D', slapd.adminDN, '-w', slapd.adminPassword], {
    input: `dn: ${slapd.groupDN('evil')}\nchangetype: modify\nadd: memberUid\nmemberUid: *\nmemberUid: user00001)(uid=*\nmemberUid: *)(|(objectClass=*)\n`,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}, 60_000);

afterAll(async () => {
  await ldap?.close();
  await slapd?.stop();
});

const search = (p: Record<string, unknown>, c = ctx()) => ldap.extra['ldap.search']!(p, c) as Promise<{ records: number }>;

describe('LDAP connector safety', () => {
  it.each([['*)(uid=*'], [')(|(objectClass=*)'], ['(uid=a)(uid=b)'], ['(&(uid=a)'], ['(uid=a))(|(uid=*)']])(
    'rejects the malformed ldap.search filter %s',
    async (filter) => {
      const err = await caught(() => search({ filter }));
      expect(err).toBeInstanceOf(OutpostError);
      expect(err).toMatchObject({ code: 'invalid_request', retryable: false });
    },
  );

  it('rejects bad attribute lists and never serves password attributes', async () => {
    for (const attributes of [['a b'], ['uid)(cn=*'], ['uid,cn']]) {
      await expect(search({ filter: '(uid=user00001)', attributes })).rejects.toMatchObject({ code: 'invalid_request' });
    }
    const err = await caught(() => search({ filter: '(uid=user00001)', attributes: ['userPassword', '2.5.4.35'] }));
    expect(err).toMatchObject({ code: 'forbidden', retryable: false });
    expect(err.message).toContain('password attributes are never returned');
  });

  it('treats \\00 and escaped metacharacters as plain values', async () => {
    for (const filter of ['(uid=\\00)', '(uid=\\2a)', '(uid=user00001\\29\\28uid=\\2a)']) {
      const c = ctx();
      expect(await search({ filter }, c)).toEqual({ records: 0 });
    }
  });

  it.each([
    ['the parent of the base', () => slapd.suffix],
    ['a sibling subtree', () => slapd.outsideDN],
    ['an entry outside', () => `uid=hidden0,${slapd.outsideDN}`],
    ['a DN whose escaped comma fakes the base suffix', () => `uid=hidden0,ou=outside,dc=example,dc=org\\,${slapd.baseDN}`],
    ['the root DSE', () => ''],
    ['garbage', () => 'not a dn'],
  ])('refuses an ldap.search base that is %s', async (_what, base) => {
    const err = await caught(() => search({ base: base(), filter: '(objectClass=*)' }));
    expect(err).toMatchObject({ code: 'invalid_request', retryable: false });
  });

  it('a search over everything under the base never shows entries outside it', async () => {
    const c = ctx();
    const r = await search({ filter: '(|(objectClass=*)(uid=hidden0))', attributes: ['1.1'] }, c);
    expect(r.records).toBeGreaterThan(2000);
    expect(c.records().filter((e) => String(e.dn).includes('ou=outside'))).toEqual([]);
  });

  it.each([
    // Literal DNs: it.each tables are built before beforeAll starts slapd (the fixture's layout is fixed).
    ['accountId outside the base', { accountId: 'uid=hidden0,ou=outside,dc=example,dc=org', entitlementId: 'cn=staff,ou=groups,ou=corp,dc=example,dc=org' }],
    ['entitlementId outside the base', { accountId: 'uid=user00001,ou=people,ou=corp,dc=example,dc=org', entitlementId: 'cn=hiddengroup,ou=outside,dc=example,dc=org' }],
    ['an escaped comma faking the suffix', { accountId: 'uid=hidden0,ou=outside,dc=example,dc=org\\,ou=corp,dc=example,dc=org', entitlementId: 'cn=staff,ou=groups,ou=corp,dc=example,dc=org' }],
    ['filter syntax after the DN', { accountId: 'uid=user00001,ou=people,ou=corp,dc=example,dc=org)(|(uid=*', entitlementId: 'cn=staff,ou=groups,ou=corp,dc=example,dc=org' }],
    ['an unparsable DN', { accountId: 'uid=user00001;ou=people', entitlementId: 'cn=staff,ou=groups,ou=corp,dc=example,dc=org' }],
  ])('grant rejects %s without touching the directory', async (_what, p) => {
    const err = await caught(() => ldap.grant(p, ctx()));
    expect(err).toMatchObject({ code: 'invalid_request', retryable: false });
    expect(err.message).not.toContain('hidden0');
  });

  it('filter metacharacters inside a DN value only ever name one (absent) entry', async () => {
    for (const accountId of [`uid=*)(uid=*,${slapd.peopleDN}`, `uid=user\\00,${slapd.peopleDN}`, `uid=*,${slapd.peopleDN}`]) {
      await expect(ldap.setAccountEnabled({ accountId, enabled: false }, ctx())).rejects.toMatchObject({ code: 'not_found' });
      await expect(ldap.grant({ accountId, entitlementId: slapd.groupDN('staff') }, ctx())).rejects.toMatchObject({ code: 'not_found' });
    }
  });

  it('hostile posix memberUid values resolve to no account', async () => {
    const c = ctx();
    await ldap.listGrants({}, c);
    const evil = c.records<GrantRecord>().filter((g) => g.entitlementId === slapd.groupDN('evil'));
    expect(evil).toEqual([]);
  });

  it('aborting a listing between pages stops it, and the next listing works', async () => {
    const c = ctx({
      onPage: (n) => {
        if (n === 3) c.controller.abort(new OutpostError('cancelled', 'job cancelled', { retryable: false }));
      },
    });
    const err = await caught(() => ldap.listAccounts({}, c));
    expect(err).toMatchObject({ code: 'cancelled' });
    expect(c.pages.length).toBe(3);
    const again = ctx({ keep: false });
    expect(await ldap.listAccounts({}, again)).toMatchObject({ records: 2001 });
  });

  it('a failing writePage (lease lost) ends the listing with that very error; the pool goes on', async () => {
    const lost = new OutpostError('lease_lost', 'lease lost');
    const c = ctx({
      onPage: (n) => {
        if (n === 2) throw lost;
      },
    });
    await expect(ldap.listAccounts({}, c)).rejects.toBe(lost);
    expect(c.pages).toHaveLength(2);
    const c2 = ctx({ onPage: () => Promise.reject(lost) });
    await expect(ldap.listGrants({}, c2)).rejects.toBe(lost);
    expect(c2.pages).toHaveLength(1);
    expect(await ldap.listEntitlements({}, ctx())).toEqual({ records: 2 });
  });

  it('an already aborted signal never reaches the directory', async () => {
    const c = ctx();
    c.controller.abort();
    expect(toWireError(await caught(() => ldap.listGrants({}, c))).code).toBe('aborted');
    expect(c.pages).toEqual([]);
  });

  it('runs more operations than maxConnections at once', async () => {
    const results = await Promise.all(Array.from({ length: 6 }, () => ldap.listEntitlements({}, ctx())));
    for (const r of results) expect(r).toEqual({ records: 2 });
  });

  it('an abort while waiting for a pooled connection leaves the queue; the pool goes on', async () => {
    const one = createLdapConnector('one', { url: slapd.url, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN, maxConnections: 1 }, deps());
    try {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const first = one.listEntitlements({}, ctx({ onPage: () => gate }));
      const waiting = ctx();
      const second = one.checkResource({}, waiting);
      setTimeout(() => waiting.controller.abort(), 50);
      expect(toWireError(await caught(() => second)).code).toBe('aborted');
      release();
      expect(await first).toEqual({ records: 2 });
      expect((await one.checkResource({}, ctx())).ok).toBe(true);
    } finally {
      await one.close();
    }
  });

  it('ldap.search stops at sizeLimit, even below the page size', async () => {
    const c = ctx();
    expect(await search({ filter: '(objectClass=inetOrgPerson)', sizeLimit: 5, attributes: ['uid'] }, c)).toEqual({ records: 5 });
    expect(c.pages.flat()).toHaveLength(5);
  });

  it('close() is idempotent and later operations fail cleanly', async () => {
    const own = createLdapConnector('tmp', { url: slapd.url, bindDN: slapd.svcDN, password: slapd.svcPassword, baseDN: slapd.baseDN }, deps());
    expect((await own.checkResource({}, ctx())).ok).toBe(true);
    await own.close();
    await own.close();
    await expect(own.checkResource({}, ctx())).rejects.toMatchObject({ code: 'unavailable' });
  });
});
