import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BusyError, InvalidCredentialsError, NoSuchObjectError, UnknownStatusCodeError } from 'ldapts';
import { createLdapConnector, parseLdapConfig } from '../../../lib/connectors/ldap/index.js';
import {
  canonicalDN, escapeDnValue, escapeFilterValue, formatDN, isUnderDN, parseDN, parseFilterStrict,
} from '../../../lib/connectors/ldap/dn.js';
import { guidToString, sidToString, toJsonEntry } from '../../../lib/connectors/ldap/entries.js';
import { mapLdapError } from '../../../lib/connectors/ldap/errors.js';
import { redact } from '../../../lib/util/redact.js';
import { caught, deps } from './helpers.js';

const base = { url: 'ldap://127.0.0.1:1', bindDN: 'cn=svc,dc=example,dc=org', password: 'Unit-Secret-42', baseDN: 'dc=example,dc=org' };

describe('DN parsing (RFC 4514)', () => {
  it('parses escapes, hex pairs, quoted values and multi-valued RDNs', () => {
    expect(parseDN('cn=Smith\\, John,ou=People, dc=example,dc=org')).toEqual([
      [{ type: 'cn', value: 'Smith, John' }], [{ type: 'ou', value: 'People' }], [{ type: 'dc', value: 'example' }], [{ type: 'dc', value: 'org' }],
    ]);
    expect(parseDN('cn=Caf\\C3\\A9\\2C x+uid=1,dc=org')).toEqual([[{ type: 'cn', value: 'Café, x' }, { type: 'uid', value: '1' }], [{ type: 'dc', value: 'org' }]]);
    expect(parseDN('cn="a, b",dc=org')[0]).toEqual([{ type: 'cn', value: 'a, b' }]);
    expect(parseDN('1.2.3.4=x')).toEqual([[{ type: '1.2.3.4', value: 'x' }]]);
    expect(parseDN('')).toEqual([]);
  });

  it.each(['uid', '=x', 'uid=a;ou=b', 'uid=a,', 'uid=a\\', 'uid=a\\zz', 'u id=a', 'cn=a"b', 'cn=a<b', 'cn=#abc'])('rejects %s', (dn) => {
    expect(() => parseDN(dn)).toThrow();
  });

  it('formats with canonical escaping and round-trips', () => {
    expect(escapeDnValue('#a, b+c ')).toBe('\\#a\\, b\\+c\\ ');
    expect(escapeDnValue('a\0b')).toBe('a\\00b');
    for (const dn of ['cn=Smith\\, John,dc=org', 'cn=\\#x\\ ,dc=org', 'cn=a\\+b\\=c\\\\d,dc=org']) expect(formatDN(parseDN(dn))).toBe(dn);
    expect(canonicalDN('cn=Smith\\2C John,dc=org')).toBe('cn=Smith\\, John,dc=org');
    expect(canonicalDN('not a dn')).toBe('not a dn');
    expect(canonicalDN('uid=a,ou=People,dc=org')).toBe('uid=a,ou=People,dc=org');
    expect(canonicalDN('cn=a=b,dc=x')).toBe('cn=a\\=b,dc=x');
    expect(canonicalDN('cn=a, dc=x')).toBe('cn=a,dc=x');
    expect(canonicalDN('cn=a+uid=b,dc=x')).toBe('cn=a+uid=b,dc=x');
  });

  it('checks containment by RDNs, case-insensitively, never by text suffix', () => {
    const b = parseDN('ou=corp,dc=example,dc=org');
    expect(isUnderDN(parseDN('uid=a,OU=Corp,DC=Example,dc=org'), b)).toBe(true);
    expect(isUnderDN(b, b)).toBe(true);
    expect(isUnderDN(parseDN('dc=example,dc=org'), b)).toBe(false);
    expect(isUnderDN(parseDN('uid=x,ou=outside,dc=org\\,ou=corp,dc=example,dc=org'), b)).toBe(false);
    expect(isUnderDN(parseDN('uid=x,ou=xcorp,dc=example,dc=org'), b)).toBe(false);
  });
});

describe('filters (RFC 4515)', () => {
  it('escapes values', () => {
    expect(escapeFilterValue('*)(uid=*')).toBe('\\2a\\29\\28uid=\\2a');
    expect(escapeFilterValue('a\\b\0')).toBe('a\\5cb\\00');
  });
  it.each(['(&(uid=a)', '(uid=a))', '(uid=a)(uid=b)', 'uid=a\0', ''])('rejects %j', (f) => {
    expect(() => parseFilterStrict(f)).toThrow();
  });
  it('parses escaped metacharacters as values', () => {
    expect(parseFilterStrict('(uid=\\2a\\29)').toString()).toBe('(uid=\\2a\\29)');
    expect(parseFilterStrict('uid=x').toString()).toBe('(uid=x)');
  });
});

describe('config', () => {
  const err = (raw: Record<string, unknown>) => {
    try {
      parseLdapConfig('corp', raw, deps());
    } catch (e) {
      return e as { code: string; message: string };
    }
    throw new Error('expected a config error');
  };

  it('applies per-flavor defaults; the common case needs four keys', () => {
    const s = parseLdapConfig('corp', base, deps());
    expect(s).toMatchObject({ flavor: 'openldap', pageSize: 500, maxConnections: 4, timeoutMs: 30_000, connectTimeoutMs: 10_000, rangeSize: 1500 });
    expect(s).toMatchObject({ userBase: base.baseDN, groupBase: base.baseDN, disabledAttribute: 'pwdAccountLockedTime', disabledValue: '000001010000Z' });
    expect(s.userFilter.toString()).toBe('(objectClass=inetOrgPerson)');
    const ad = parseLdapConfig('corp', { ...base, flavor: 'ad' }, deps());
    expect(ad.groupFilter.toString()).toBe('(objectClass=group)');
  });

  it.each([
    [{ ...base, url: undefined }, 'resources.corp.url'],
    [{ ...base, url: 'http://x' }, 'resources.corp.url'],
    [{ ...base, bogus: 1 }, 'resources.corp.bogus'],
    [{ ...base, tls: { caFile: 3 } }, 'resources.corp.tls.caFile'],
    [{ ...base, pageSize: 0 }, 'resources.corp.pageSize'],
    [{ ...base, password: undefined }, 'resources.corp.passwordFile'],
    [{ ...base, passwordFile: '/x' }, 'resources.corp.password'],
    [{ ...base, baseDN: 'not a dn' }, 'resources.corp.baseDN'],
    [{ ...base, userBase: 'ou=people,dc=other' }, 'resources.corp.userBase'],
    [{ ...base, groupFilter: '(cn=a' }, 'resources.corp.groupFilter'],
    [{ ...base, url: 'ldaps://h', startTls: true }, 'resources.corp.startTls'],
    [{ ...base, tls: { caFile: '/nonexistent/ca.pem' } }, 'resources.corp.tls.caFile'],
    [{ ...base, openldap: { disabledAttribute: 'a b' } }, 'resources.corp.openldap.disabledAttribute'],
  ])('rejects %j naming %s', (raw, key) => {
    const e = err(raw as Record<string, unknown>);
    expect(e.code).toBe('config_error');
    expect(e.message).toContain(key);
    expect(e.message).not.toContain(base.password);
  });

  it('accepts UPN and down-level bind names for AD only', () => {
    for (const bindDN of ['svc@corp.example', 'CORP\\svc']) {
      expect(parseLdapConfig('corp', { ...base, flavor: 'ad', bindDN }, deps()).bindDN).toBe(bindDN);
      expect(err({ ...base, bindDN }).message).toContain('resources.corp.bindDN');
    }
  });

  it('reads passwordFile at startup and again per connection, and registers it for redaction', () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-ldapcfg-'));
    try {
      const file = join(dir, 'pw');
      writeFileSync(file, 'File-Secret-77\n');
      const s = parseLdapConfig('corp', { ...base, password: undefined, passwordFile: file }, deps());
      expect(s.password()).toBe('File-Secret-77');
      writeFileSync(file, 'Rotated-Secret-78\n');
      expect(s.password()).toBe('Rotated-Secret-78');
      expect(redact('bind with File-Secret-77')).not.toContain('File-Secret-77');
      const e = err({ ...base, password: undefined, passwordFile: join(dir, 'missing') });
      expect(e).toMatchObject({ code: 'config_error' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a password file that disappears later is a config_error at the next connection, not a network error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-ldapcfg-'));
    try {
      const file = join(dir, 'pw');
      writeFileSync(file, 'Gone-Secret-79\n');
      const c = createLdapConnector('corp', { ...base, password: undefined, passwordFile: file }, deps());
      rmSync(file);
      const e = await caught(() => c.checkResource({}, { signal: new AbortController().signal, log: deps().log, writePage: async () => {} }));
      expect(e).toMatchObject({ code: 'config_error', retryable: false });
      expect(e.message).toContain(file);
      await c.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('the factory does not connect', () => {
    const c = createLdapConnector('corp', base, deps());
    expect(c.kind).toBe('ldap');
    expect(Object.keys(c.extra)).toEqual(['ldap.search']);
    expect(redact(`x ${base.password}`)).not.toContain(base.password);
  });
});

describe('error table', () => {
  it.each([
    [new InvalidCredentialsError('80090308: LdapErr: DSID-0C0903A9, data 52e'), 'invalid_credentials', false],
    [new NoSuchObjectError(), 'not_found', false],
    [new BusyError(), 'busy', true],
    [new UnknownStatusCodeError(50, 'no'), 'permission_denied', false],
    [new UnknownStatusCodeError(52, 'down'), 'unavailable', true],
    [new UnknownStatusCodeError(3, 'slow'), 'timeout', true],
    [new UnknownStatusCodeError(80, 'other'), 'unavailable', true],
    [new UnknownStatusCodeError(34, 'bad dn'), 'invalid_request', false],
    [new UnknownStatusCodeError(87, 'bad filter'), 'invalid_request', false],
    [new UnknownStatusCodeError(123, '?'), 'internal', false],
    [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 'unavailable', true],
    [Object.assign(new Error('x'), { code: 'ETIMEDOUT' }), 'timeout', true],
    [new Error('Socket error. Message type: SearchRequest (0x63)\nread ECONNRESET'), 'unavailable', true],
    [new Error('Connection closed before message response was received. Message type: SearchRequest (0x63)'), 'unavailable', true],
    [new Error('SearchRequest: Operation timed out'), 'timeout', true],
    [new Error('Connection timeout'), 'timeout', true],
    [Object.assign(new Error('self-signed certificate in certificate chain'), { code: 'SELF_SIGNED_CERT_IN_CHAIN' }), 'tls_error', false],
    [Object.assign(new Error('Hostname/IP does not match'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }), 'tls_error', false],
    [Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' }), 'tls_error', false],
  ])('%s → %s', (e, code, retryable) => {
    expect(mapLdapError(e, 'corp', 'search')).toMatchObject({ code, retryable });
  });

  it('keeps the server diagnostic as it is, and never echoes the text of other errors', async () => {
    const e = mapLdapError(new InvalidCredentialsError('80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e'), 'corp', 'bind');
    expect(e.message).toBe('ldap corp: bind failed: invalid credentials [49] (80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data 52e)');
    const odd = mapLdapError(new Error(`odd failure quoting ${base.password}`), 'corp', 'search');
    expect(odd).toMatchObject({ code: 'internal', message: 'ldap corp: search failed: unexpected error (Error)' });
    // A 1 MB diagnostic costs linear time and is cut to its first 300 characters.
    const long = mapLdapError(new InvalidCredentialsError(`${' '.repeat(1 << 20)}x Code: 0x31`), 'corp', 'bind');
    expect(long.message.length).toBeLessThan(400);
    const aborted = await caught(async () => {
      throw mapLdapError(Object.assign(new Error('x'), { name: 'AbortError' }), 'corp', 'search');
    });
    expect(aborted).toMatchObject({ code: 'aborted', retryable: true });
  });
});

describe('entry values', () => {
  it('formats objectGUID and objectSid as AD does', () => {
    expect(guidToString(Buffer.from('33221100554477668899aabbccddeeff', 'hex'))).toBe('00112233-4455-6677-8899-aabbccddeeff');
    const sid = Buffer.from('010500000000000515000000' + 'a065cf7e' + '784b9b5f' + 'e77c8770' + 'f4010000', 'hex');
    expect(sidToString(sid)).toBe('S-1-5-21-2127521184-1604012920-1887927527-500');
  });
  it('drops password attributes and encodes binary values', () => {
    const out = toJsonEntry({
      dn: 'cn=a', userPassword: 'x', unicodePwd: Buffer.from('y'), '2.5.4.35': 'z', 'userPassword;binary': 'w', jpegPhoto: Buffer.from([1, 2]), cn: ['a', 'b'], '*': [],
    });
    expect(out).toEqual({ dn: 'cn=a', jpegPhoto: 'AQI=', cn: ['a', 'b'] });
  });
});
