import { afterEach, describe, expect, it } from '@jest/globals';
import { OutpostError, toWireError } from '../../lib/util/errors.js';
import { clearSecretsForTest, redact, redactDeep, redactSecrets, registerSecret } from '../../lib/util/redact.js';

const MB = 1024 * 1024;
/** Inputs built to make a backtracking pattern quadratic: long runs of what each pattern's quantifiers accept. */
const HOSTILE: Record<string, string> = {
  'scheme characters': 'abc.def-'.repeat(MB / 8),
  'letters only': 'a'.repeat(MB),
  'scheme-like starts without user-info': 'a://b'.repeat(MB / 5),
  'user-info without @': `x://${'u:'.repeat(MB / 2)}`,
  'many schemes and colons': 'a://b:c:d'.repeat(MB / 9),
  'password words': 'password '.repeat(MB / 9),
  'password then spaces': `password${' '.repeat(MB)}`,
  'password = spaces': `password=${' '.repeat(MB)}`,
  'bearer words': 'bearer '.repeat(MB / 7),
  'basic then short runs': 'basic abc '.repeat(MB / 10),
  'token shapes': 'token'.repeat(MB / 5),
  'whitespace': ' \t'.repeat(MB / 2),
};

afterEach(() => clearSecretsForTest());

describe('redaction (log lines only)', () => {
  it('removes registered secrets and credential patterns from free text', () => {
    registerSecret('s3cr3t-V@lue');
    expect(redact('bind failed with s3cr3t-V@lue')).toBe('bind failed with [REDACTED]');
    expect(redact('via http://bob:hunter2@proxy:3128/')).toBe('via http://bob:[REDACTED]@proxy:3128/');
    expect(redact('x postgres://svc:pw@db:5432/hr and ldap://h/')).toBe('x postgres://svc:[REDACTED]@db:5432/hr and ldap://h/');
    expect(redact('Authorization: Bearer abc.def-ghi')).toBe('Authorization: Bearer [REDACTED]');
    expect(redact('password=letmein;x')).toBe('password=[REDACTED];x');
    expect(redact('{"token":"abc"}')).toBe('{"token":"[REDACTED]"}');
  });

  it('leaves prose alone: a colon and a space is not an assignment', () => {
    expect(redact('adminToken: must be at least 16 characters')).toBe('adminToken: must be at least 16 characters');
    expect(redact('cannot read proxy.tokenFile file /run/secrets/agent-token: ENOENT')).toBe('cannot read proxy.tokenFile file /run/secrets/agent-token: ENOENT');
  });

  it('redacts deep values and secret-named keys; patterns only in text and URL fields', () => {
    registerSecret('s3cr3t-V@lue');
    const out = redactDeep({ a: { password: 'x1', list: ['s3cr3t-V@lue'] }, token: 't' }) as any;
    expect(out).toEqual({ a: { password: '[REDACTED]', list: ['[REDACTED]'] }, token: '[REDACTED]' });
    const meta = redactDeep({ proxyUrl: 'http://u:pw@h/', group: 'cn=a://b:c@d', error: 'password=x', err: new Error('at http://u:pw@h/', { cause: new Error('s3cr3t-V@lue') }) }) as any;
    expect(meta.proxyUrl).toBe('http://u:[REDACTED]@h/');
    // Data under an ordinary key is not pattern-matched (it is not where a credential is).
    expect(meta.group).toBe('cn=a://b:c@d');
    expect(meta.error).toBe('password=[REDACTED]');
    expect(meta.err).toMatchObject({ message: 'at http://u:[REDACTED]@h/', cause: { message: '[REDACTED]' } });
  });

  it.each(Object.entries(HOSTILE))('runs in linear time on 1 MB of %s', (_name, input) => {
    registerSecret('a-registered-secret');
    // Completes (the quadratic pattern took minutes on these); the jest timeout is the bound.
    expect(redact(input).length).toBeGreaterThan(0);
    expect(redactDeep({ message: input, url: input, value: input })).toBeDefined();
  }, 30_000);

  it('registered values are replaced only in log text: redactSecrets', () => {
    registerSecret('admin');
    expect(redactSecrets('cn=admins,ou=groups')).toBe('cn=[REDACTED]s,ou=groups');
  });
});

describe('wire errors', () => {
  it('are never rewritten by value', () => {
    registerSecret('admin');
    registerSecret('hunter2-pw');
    const e = new OutpostError('not_found', 'cn=admins not found; try hunter2-pw; a bearer token is required');
    expect(toWireError(e)).toEqual({ code: 'not_found', message: 'cn=admins not found; try hunter2-pw; a bearer token is required', retryable: false });
    expect(toWireError(new OutpostError('busy', 'try later', { retryable: true }))).toEqual({ code: 'busy', message: 'try later', retryable: true });
  });

  it('carry no text of an unknown error, only its code or class', () => {
    registerSecret('Pa55word!x');
    expect(toWireError(new Error('login failed for Pa55word!x at postgres://u:Pa55word!x@db'))).toEqual({
      code: 'internal', message: 'internal error (Error)', retryable: false,
    });
    expect(toWireError(Object.assign(new Error('connect ECONNRESET http://u:p@h'), { code: 'ECONNRESET' })).message).toBe('internal error (ECONNRESET)');
    expect(toWireError(Object.assign(new Error('x'), { code: 'has spaces: and a secret' })).message).toBe('internal error (Error)');
    expect(toWireError('a string with a secret').message).toBe('internal error');
  });
});
