/**
 * Passwords: AD `unicodePwd` (quoted UTF-16LE, only over LDAPS or StartTLS)
 * and the OpenLDAP Password Modify extended operation (RFC 3062), so that the
 * server hashes the value. The plaintext never reaches an error, a log line
 * or a result: errors whose server text quotes it lose that text.
 */
import { TLSSocket } from 'node:tls';
import { Attribute, BerWriter, Change, type Client } from 'ldapts';
import type { ChangeResult, SetPasswordPayload } from '../../protocol/operations.js';
import { OutpostError } from '../../util/errors.js';
import type { OperationContext } from '../types.js';
import type { LdapSettings } from './config.js';
import { EntryView } from './entries.js';
import { ldapResultCode } from './errors.js';
import type { LdapPool } from './pool.js';
import { readEntry } from './search.js';
import { target } from './targets.js';

/** RFC 3062 Password Modify. */
export const PASSWORD_MODIFY_OID = '1.3.6.1.4.1.4203.1.11.1';
/** The ppolicy request control: slapd lists it in supportedControl when the ppolicy overlay is loaded. */
export const PPOLICY_CONTROL_OID = '1.3.6.1.4.1.42.2.27.8.5.1';

/**
 * Refuses (before anything is sent) to put a password on a connection that
 * is not encrypted: `ldaps://` or `startTls: true`. Samba accepts unicodePwd
 * over plain LDAP when strong auth is off; this checks what we send.
 */
export function requireEncrypted(s: LdapSettings, what: string): void {
  if (!s.secure && !s.startTls) {
    throw new OutpostError(
      'forbidden',
      `ldap ${s.name}: ${what} sends a password, which is only ever sent over LDAPS or StartTLS; this resource uses plain ldap:// (set an ldaps:// url or startTls: true)`,
    );
  }
}

/** The same rule, checked on the connection itself right before a password goes out. */
export function assertTlsSocket(s: LdapSettings, client: Client): void {
  const socket = (client as unknown as { socket?: unknown }).socket;
  if (!(socket instanceof TLSSocket) || !socket.encrypted) {
    throw new OutpostError('forbidden', `ldap ${s.name}: the connection is not encrypted; a password is never sent over it`);
  }
}

/** AD's unicodePwd value: the password in double quotes, UTF-16LE. */
export function unicodePwd(password: string): Buffer {
  return Buffer.from(`"${password}"`, 'utf16le');
}

/**
 * The PasswdModifyRequestValue of RFC 3062:
 * `SEQUENCE { userIdentity [0] OCTET STRING, newPasswd [2] OCTET STRING }` (no oldPasswd: an administrative reset).
 */
export function passwordModifyValue(dn: string, password: string): Buffer {
  const w = new BerWriter();
  w.startSequence();
  w.writeBuffer(Buffer.from(dn, 'utf8'), 0x80);
  w.writeBuffer(Buffer.from(password, 'utf8'), 0x82);
  w.endSequence();
  return w.buffer;
}

/**
 * Runs a write that carries `password`. A failure keeps its code; if the
 * server's text quotes the password, the message says only what failed.
 */
export async function withPassword<T>(s: LdapSettings, password: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof OutpostError && !err.message.includes(password)) throw err;
    const code = err instanceof OutpostError ? err.code : 'internal';
    const retryable = err instanceof OutpostError ? err.retryable : false;
    throw new OutpostError(code, `ldap ${s.name}: ${what} failed (${code}); the server's text was dropped because it quoted the password`, { retryable });
  }
}

/** Whether the server offers ppolicy (and so honours pwdReset). */
export async function hasPpolicy(pool: LdapPool, ctx: OperationContext): Promise<boolean> {
  const root = await readEntry(pool, ctx.signal, '', ['supportedControl']);
  return root ? new EntryView(root).all('supportedControl').includes(PPOLICY_CONTROL_OID) : false;
}

/** Sets an OpenLDAP password with Password Modify (the server hashes it). */
export async function passwordModify(pool: LdapPool, s: LdapSettings, dn: string, password: string, ctx: OperationContext): Promise<void> {
  await withPassword(s, password, 'Password Modify', () =>
    pool.use(ctx.signal, 'modify', async (c) => {
      assertTlsSocket(s, c);
      await c.exop(PASSWORD_MODIFY_OID, passwordModifyValue(dn, password));
    }),
  );
}

/**
 * `setPassword`: AD replaces unicodePwd (and sets pwdLastSet = 0 for
 * `mustChange`) in one modify; OpenLDAP uses Password Modify, then
 * `pwdReset: TRUE` for `mustChange` (only with the ppolicy overlay; refused
 * before anything is written otherwise). `mustChange: false` clears a
 * pending pwdReset on OpenLDAP (AD clears it by itself on an admin reset).
 */
export async function setPassword(
  pool: LdapPool,
  s: LdapSettings,
  p: SetPasswordPayload & { password: string },
  ctx: OperationContext,
): Promise<ChangeResult> {
  if (typeof p.password !== 'string' || !p.password) {
    throw new OutpostError('invalid_request', `ldap ${s.name}: password must arrive opened as a non-empty string`);
  }
  requireEncrypted(s, 'setPassword');
  const password = p.password;
  const extra = s.flavor === 'openldap' && p.mustChange === false ? ['pwdReset'] : [];
  const { dn, entry } = await target(pool, s, p.accountId, 'accountId', 'account', extra, ctx, { outsideForbidden: true });
  if (s.flavor === 'ad') {
    const changes = [new Change({ operation: 'replace', modification: new Attribute({ type: 'unicodePwd', values: [unicodePwd(password)] }) })];
    if (p.mustChange) changes.push(new Change({ operation: 'replace', modification: new Attribute({ type: 'pwdLastSet', values: ['0'] }) }));
    await withPassword(s, password, 'setting unicodePwd', () =>
      pool.use(ctx.signal, 'modify', async (c) => {
        assertTlsSocket(s, c);
        await c.modify(dn, changes);
      }),
    );
    return { changed: true };
  }
  if (p.mustChange && !(await hasPpolicy(pool, ctx))) {
    throw new OutpostError('invalid_request', `ldap ${s.name}: mustChange needs the ppolicy overlay (pwdReset), which this server does not offer`);
  }
  await passwordModify(pool, s, dn, password, ctx);
  let reset: Change | undefined;
  if (p.mustChange) reset = new Change({ operation: 'replace', modification: new Attribute({ type: 'pwdReset', values: ['TRUE'] }) });
  else if (p.mustChange === false && new EntryView(entry).has('pwdReset')) {
    reset = new Change({ operation: 'delete', modification: new Attribute({ type: 'pwdReset', values: [] }) });
  }
  if (reset) {
    try {
      await pool.use(ctx.signal, 'modify', (c) => c.modify(dn, reset));
    } catch (err) {
      // ppolicy may already have removed pwdReset with the password change.
      if (!(err instanceof OutpostError && ldapResultCode(err.cause) === 16)) throw err;
    }
  }
  return { changed: true };
}
