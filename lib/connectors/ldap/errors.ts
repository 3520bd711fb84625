import { ResultCodeError } from 'ldapts';
import { OutpostError, isAbortError, type ErrorCode } from '../../util/errors.js';

interface Mapping {
  code: ErrorCode;
  retryable: boolean;
  /** What the operator reads first; the server's diagnostic follows it. */
  text: string;
}
const m = (code: ErrorCode, retryable: boolean, text: string): Mapping => ({ code, retryable, text });

/**
 * THE table: LDAP result codes (RFC 4511 §4.1.9) to Outpost codes. Anything
 * not listed is `internal`, not retryable. 16 and 20 are also answered by
 * grant/revoke themselves (idempotence) before they get here.
 */
export const LDAP_RESULT_CODES: Readonly<Record<number, Mapping>> = {
  1: m('unavailable', true, 'operations error'),
  2: m('internal', false, 'protocol error'),
  3: m('timeout', true, 'time limit exceeded'),
  4: m('too_large', false, 'size limit exceeded (use a paged listing or a smaller sizeLimit)'),
  7: m('config_error', false, 'authentication method not supported'),
  8: m('config_error', false, 'the server requires stronger authentication (use ldaps:// or startTls)'),
  10: m('not_found', false, 'referral (the entry is held by another server)'),
  11: m('too_large', false, 'administrative limit exceeded'),
  12: m('invalid_request', false, 'unavailable critical extension'),
  13: m('config_error', false, 'confidentiality required (use ldaps:// or startTls)'),
  16: m('conflict', false, 'no such attribute'),
  17: m('invalid_request', false, 'undefined attribute type'),
  18: m('invalid_request', false, 'inappropriate matching'),
  19: m('conflict', false, 'constraint violation'),
  20: m('conflict', false, 'attribute or value exists'),
  21: m('invalid_request', false, 'invalid attribute syntax'),
  32: m('not_found', false, 'no such object'),
  33: m('invalid_request', false, 'alias problem'),
  34: m('invalid_request', false, 'invalid DN syntax'),
  36: m('invalid_request', false, 'alias dereferencing problem'),
  48: m('invalid_credentials', false, 'inappropriate authentication'),
  49: m('invalid_credentials', false, 'invalid credentials'),
  50: m('permission_denied', false, 'insufficient access rights'),
  51: m('busy', true, 'server busy'),
  52: m('unavailable', true, 'server unavailable'),
  53: m('permission_denied', false, 'server unwilling to perform'),
  54: m('internal', false, 'loop detected'),
  64: m('invalid_request', false, 'naming violation'),
  65: m('conflict', false, 'object class violation'),
  66: m('conflict', false, 'not allowed on non-leaf'),
  67: m('invalid_request', false, 'not allowed on RDN'),
  68: m('conflict', false, 'entry already exists'),
  69: m('invalid_request', false, 'object class modifications prohibited'),
  70: m('too_large', false, 'results too large'),
  71: m('invalid_request', false, 'affects multiple DSAs'),
  80: m('unavailable', true, 'other (server-side) error'),
  87: m('invalid_request', false, 'filter error'),
  122: m('conflict', false, 'assertion failed'),
};

/** Socket-level errors (Node `code`s), including those ldapts folds into its message text. */
const SOCKET_CODES: Readonly<Record<string, Mapping>> = {
  ECONNREFUSED: m('unavailable', true, 'connection refused'),
  ECONNRESET: m('unavailable', true, 'connection reset by the server'),
  EPIPE: m('unavailable', true, 'connection closed by the server'),
  ETIMEDOUT: m('timeout', true, 'connection timed out'),
  EHOSTUNREACH: m('unreachable', true, 'host unreachable'),
  ENETUNREACH: m('unreachable', true, 'network unreachable'),
  ENOTFOUND: m('unreachable', true, 'host name not found'),
  EAI_AGAIN: m('unreachable', true, 'host name lookup failed'),
};

/** TLS verification failures: what an operator must fix, said plainly. */
const TLS_CODES: Readonly<Record<string, string>> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate not trusted (unknown issuer; set tls.caFile)',
  UNABLE_TO_GET_ISSUER_CERT: 'certificate not trusted (unknown issuer; set tls.caFile)',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate not trusted (unknown issuer; set tls.caFile)',
  SELF_SIGNED_CERT_IN_CHAIN: 'certificate not trusted (self-signed certificate in chain; set tls.caFile)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'certificate not trusted (self-signed certificate; set tls.caFile)',
  CERT_SIGNATURE_FAILURE: 'certificate not trusted (bad signature)',
  CERT_UNTRUSTED: 'certificate not trusted',
  CERT_REVOKED: 'certificate revoked',
  ERR_TLS_CERT_ALTNAME_INVALID: 'host name mismatch (the certificate does not name this host; set tls.serverName or fix the URL)',
  CERT_HAS_EXPIRED: 'certificate expired',
  CERT_NOT_YET_VALID: 'certificate not yet valid',
  ERR_SSL_WRONG_VERSION_NUMBER: 'handshake failed (is this port really LDAPS?)',
  EPROTO: 'handshake failed',
};

/** Where the error happened, for the message: `bind`, `search`, `modify`, `connect`. */
export type LdapStep = 'connect' | 'starttls' | 'bind' | 'search' | 'modify' | 'compare';

/**
 * Turns whatever ldapts or the socket threw into an OutpostError from the
 * tables above. The message is built from the resource, the step, the mapped
 * text and codes, plus the server's diagnostic for an LDAP result (a
 * directory names entries and rules there, never the bind password). The
 * text of any other error is not echoed: it is not ours and could quote
 * anything. Messages are never rewritten by value (they reach the job's error
 * as they are), so nothing here may depend on a secret's value.
 */
export function mapLdapError(err: unknown, resource: string, step: LdapStep): OutpostError {
  if (err instanceof OutpostError) return err;
  const where = `ldap ${resource}: ${step}`;
  const say = (code: ErrorCode, retryable: boolean, text: string, detail?: string) =>
    new OutpostError(code, `${where} failed: ${text}${detail ? ` (${detail})` : ''}`, { retryable, cause: err });

  if (isAbortError(err)) return new OutpostError('aborted', `${where} aborted`, { retryable: true, cause: err });
  if (err instanceof ResultCodeError) {
    const detail = serverDiagnostic(err.message);
    // A server that answers StartTLS with an error will not offer it on a retry either.
    if (step === 'starttls') return say('tls_error', false, `StartTLS refused by the server [${err.code}]`, detail);
    const hit = LDAP_RESULT_CODES[err.code];
    if (hit) return say(hit.code, hit.retryable, `${hit.text} [${err.code}]`, detail);
    return say('internal', false, `LDAP result ${err.code}`, detail);
  }
  // Anything may be thrown, null included.
  const e = err as (NodeJS.ErrnoException & { reason?: string }) | null | undefined;
  const nodeCode = typeof e?.code === 'string' ? e.code : undefined;
  if (nodeCode && TLS_CODES[nodeCode]) return say('tls_error', false, `TLS ${TLS_CODES[nodeCode]}`, nodeCode);
  if (nodeCode?.startsWith('ERR_SSL_') || nodeCode?.startsWith('ERR_TLS_')) return say('tls_error', false, 'TLS handshake failed', nodeCode);
  const s = nodeCode ? SOCKET_CODES[nodeCode] : undefined;
  if (nodeCode && s) {
    return say(s.code, s.retryable, s.text, nodeCode);
  }
  const message = err instanceof Error ? err.message : String(err);
  // ldapts reports socket trouble as plain Errors whose text carries the cause.
  for (const [code, s] of Object.entries(SOCKET_CODES)) {
    if (message.includes(code)) return say(s.code, s.retryable, s.text, code);
  }
  if (/Connection closed before message response|Socket connection not established|socket hang up|ended by the other party|^Socket error/i.test(message)) {
    return say('unavailable', true, 'connection closed by the server');
  }
  if (/Operation timed out/i.test(message)) return say('timeout', true, 'no answer within timeoutMs');
  if (/Connection timeout/i.test(message)) return say('timeout', true, 'connect did not finish within connectTimeoutMs');
  if (/certificate|ssl|tls/i.test(message)) return say('tls_error', false, 'TLS failure', safeName(err));
  return say('internal', false, 'unexpected error', safeName(err));
}

/** An error's code or class name when it is a plain identifier; never its text. */
function safeName(err: unknown): string | undefined {
  const e = err as { code?: unknown; name?: unknown } | null | undefined;
  for (const v of [e?.code, e?.name]) if (typeof v === 'string' && /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/.test(v)) return v;
  return undefined;
}

/**
 * ldapts appends ` Code: 0x31` to the server's text; keep the server's words
 * only: the first line, at most 300 characters. The suffix is looked for in
 * the last 64 characters only, so a server's long text costs linear time.
 */
function serverDiagnostic(message: string): string | undefined {
  const tail = message.slice(-64);
  const suffix = /\s*Code: 0x[0-9a-f]+$/i.exec(tail);
  const text = (suffix ? message.slice(0, message.length - tail.length + suffix.index) : message).trim();
  return text ? firstLine(text) : undefined;
}

function firstLine(text: string): string {
  const end = text.indexOf('\n');
  return (end >= 0 ? text.slice(0, end) : text).slice(0, 300);
}

/** The LDAP result code of an error, when it is one. */
export function ldapResultCode(err: unknown): number | undefined {
  return err instanceof ResultCodeError ? err.code : undefined;
}
