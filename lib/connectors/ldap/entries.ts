import type { Entry } from 'ldapts';

/** A search entry with case-insensitive attribute access (servers answer in their own case). */
export class EntryView {
  private lower: Map<string, Entry[string]> | undefined;

  constructor(readonly entry: Entry) {}

  /** The exact key first (the usual case); a case-insensitive index only when that misses. */
  private get(attr: string): Entry[string] | undefined {
    const exact = this.entry[attr];
    if (exact !== undefined && attr !== 'dn') return exact;
    if (!this.lower) {
      this.lower = new Map();
      for (const [k, v] of Object.entries(this.entry)) if (k !== 'dn') this.lower.set(k.toLowerCase(), v);
    }
    return this.lower.get(attr.toLowerCase());
  }

  get dn(): string {
    return this.entry.dn;
  }

  /** Every value of `attr` (strings; buffers are decoded as UTF-8). */
  all(attr: string): string[] {
    const v = this.get(attr);
    if (v === undefined) return [];
    const list = Array.isArray(v) ? v : [v];
    return list.map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : x));
  }

  /** Values for a JSON record: text as is, binary (not UTF-8) as base64. */
  json(attr: string): string[] {
    const v = this.get(attr);
    if (v === undefined) return [];
    return (Array.isArray(v) ? v : [v]).map((x) => (Buffer.isBuffer(x) ? x.toString('base64') : x));
  }

  /** The first value of `attr`, or null. */
  first(attr: string): string | null {
    return this.all(attr)[0] ?? null;
  }

  /** The raw first value (a Buffer for attributes asked for as buffers). */
  buffer(attr: string): Buffer | null {
    const v = this.get(attr);
    const x = Array.isArray(v) ? v[0] : v;
    return Buffer.isBuffer(x) ? x : null;
  }

  has(attr: string): boolean {
    return this.all(attr).length > 0;
  }

  /** Attribute names as the server sent them. */
  keys(): string[] {
    return Object.keys(this.entry).filter((k) => k !== 'dn');
  }
}

/**
 * AD's objectGUID bytes as the usual string: the first three groups are
 * little-endian, the last two are in byte order.
 */
export function guidToString(b: Buffer): string {
  if (b.length !== 16) return b.toString('hex');
  const h = (i: number) => b.readUInt8(i).toString(16).padStart(2, '0');
  const seq = (idx: number[]) => idx.map(h).join('');
  return `${seq([3, 2, 1, 0])}-${seq([5, 4])}-${seq([7, 6])}-${seq([8, 9])}-${seq([10, 11, 12, 13, 14, 15])}`;
}

/** A Windows SID in its `S-1-5-21-…` form. */
export function sidToString(b: Buffer): string {
  if (b.length < 8) return b.toString('hex');
  const count = b.readUInt8(1);
  const authority = b.readUIntBE(2, 6);
  const subs: number[] = [];
  for (let i = 0; i < count && 8 + i * 4 + 4 <= b.length; i++) subs.push(b.readUInt32LE(8 + i * 4));
  return ['S', b[0], authority, ...subs].join('-');
}

/**
 * Password material that a job result must never carry, whatever the
 * service account may read and whatever `ldap.search` asks for.
 */
export const SECRET_ATTRIBUTES: ReadonlySet<string> = new Set(
  [
    'userPassword',
    'unicodePwd',
    'dBCSPwd',
    'ntPwdHistory',
    'lmPwdHistory',
    'supplementalCredentials',
    'msDS-ManagedPassword',
    'ms-Mcs-AdmPwd',
    'msLAPS-Password',
    'msLAPS-EncryptedPassword',
    'sambaNTPassword',
    'sambaLMPassword',
    'pwdHistory',
    'authPassword',
    'sambaPasswordHistory',
    'unixUserPassword',
    'msSFU30Password',
    'krbPrincipalKey',
    // BitLocker recovery and TPM owner secrets stored on computer objects.
    'msFVE-RecoveryPassword',
    'msFVE-KeyPackage',
    'msTPM-OwnerInformation',
    // The same by OID: a search may name an attribute either way.
    '2.5.4.35',
    '1.2.840.113556.1.4.90',
    '1.3.6.1.4.1.4203.1.3.4',
  ].map((a) => a.toLowerCase()),
);

/** Attributes returned as buffers and then turned into their string forms. */
export const BINARY_ATTRIBUTES = ['objectGUID', 'objectSid'];

/**
 * An entry as a JSON-safe record: `{dn, attr: value | value[]}`; GUIDs and
 * SIDs in string form, other binary values base64, password attributes
 * dropped, and so is every attribute `keep` refuses (ldap.search passes its
 * AttributePolicy: what the server sent beyond what may be returned is never shown).
 */
export function toJsonEntry(entry: Entry, keep?: (attribute: string) => boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { dn: entry.dn };
  for (const [k, v] of Object.entries(entry)) {
    // ldapts lists every requested name it did not get back, even `*` and `+`: not attributes.
    if (k === 'dn' || k === '*' || k === '+' || k === '1.1') continue;
    // The name before any option (`member;range=0-1499`); split always gives at least one part.
    const base = (k.split(';', 1)[0] ?? k).toLowerCase();
    if (SECRET_ATTRIBUTES.has(base) || (keep && !keep(k))) continue;
    const conv = (x: Buffer | string): string => {
      if (!Buffer.isBuffer(x)) return x;
      if (base === 'objectguid') return guidToString(x);
      if (base === 'objectsid') return sidToString(x);
      return x.toString('base64');
    };
    out[k] = Array.isArray(v) ? (v as Array<Buffer | string>).map(conv) : conv(v);
  }
  return out;
}
