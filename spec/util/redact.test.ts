import { describe, expect, it } from '@jest/globals';
import { OutpostError, toWireError } from '../../lib/util/errors.js';
import { redact, redactDeep, registerSecret } from '../../lib/util/redact.js';

describe('redaction', () => {
  it('removes registered secrets and credential patterns', () => {
    registerSecret('s3cr3t-V@lue');
    expect(redact('bind failed with s3cr3t-V@lue')).toBe('bind failed with [REDACTED]');
    expect(redact('via http://bob:hunter2@proxy:3128/')).toBe('via http://bob:[REDACTED]@proxy:3128/');
    expect(redact('Authorization: Bearer abc.def-ghi')).toBe('Authorization: Bearer [REDACTED]');
    expect(redact('password=letmein;x')).toBe('password=[REDACTED];x');
  });
  it('redacts deep values and secret-named keys', () => {
    const out = redactDeep({ a: { password: 'x1', list: ['s3cr3t-V@lue'] }, token: 't' }) as any;
    expect(out).toEqual({ a: { password: '[REDACTED]', list: ['[REDACTED]'] }, token: '[REDACTED]' });
  });
  it('wire errors never carry a secret', () => {
    registerSecret('Pa55word!x');
    expect(toWireError(new Error('login failed for Pa55word!x'))).toEqual({
      code: 'internal', message: 'login failed for [REDACTED]', retryable: false,
    });
    expect(toWireError(new OutpostError('busy', 'try later', { retryable: true }))).toEqual({
      code: 'busy', message: 'try later', retryable: true,
    });
  });
});
