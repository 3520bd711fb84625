/**
 * Distinguished names (RFC 4514) and filter values (RFC 4515).
 *
 * ldapts builds DNs but cannot parse one, and a DN that arrives in a payload
 * must be checked against the configured base by its parsed RDNs, never by
 * string suffix: `uid=x,dc=org\,ou=corp,dc=example,dc=org` ends with the text
 * of `ou=corp,dc=example,dc=org` but is not under it.
 */
import { FilterParser, type Filter } from 'ldapts';

/** One `type=value` pair of an RDN. */
export interface Ava {
  type: string;
  value: string;
}
/** An RDN: one or more AVAs joined by `+`. */
export type Rdn = Ava[];

/** A DN that cannot be parsed. Callers turn it into `invalid_request` or `config_error`. */
export class DnSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DnSyntaxError';
  }
}

const TYPE_RE = /^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)*)$/;
// Characters RFC 4514 requires escaped inside a string value.
const MUST_ESCAPE = new Set(['"', '+', ',', ';', '<', '>', '\\']);

/** Parses a DN into RDNs, first (leftmost) RDN first. The empty string is the root DSE (no RDNs). */
export function parseDN(dn: string): Rdn[] {
  const rdns: Rdn[] = [];
  let i = 0;
  const n = dn.length;
  const skipSpaces = () => {
    while (i < n && dn[i] === ' ') i++;
  };
  skipSpaces();
  if (i === n) return rdns;
  let rdn: Rdn = [];
  for (;;) {
    skipSpaces();
    const eq = dn.indexOf('=', i);
    if (eq < 0) throw new DnSyntaxError('an attribute type without "="');
    const type = dn.slice(i, eq).trim();
    if (!TYPE_RE.test(type)) throw new DnSyntaxError('an invalid attribute type');
    i = eq + 1;
    skipSpaces();
    const { value, end } = readValue(dn, i);
    rdn.push({ type, value });
    i = end;
    skipSpaces();
    if (i === n) {
      rdns.push(rdn);
      return rdns;
    }
    const sep = dn[i];
    i++;
    if (sep === ',') {
      rdns.push(rdn);
      rdn = [];
    } else if (sep !== '+') {
      throw new DnSyntaxError('an unescaped special character');
    }
    if (i === n) throw new DnSyntaxError('a trailing separator');
  }
}

function readValue(dn: string, start: number): { value: string; end: number } {
  if (dn[start] === '#') {
    // A BER-encoded value: kept as its hex text; it never names a known entry type here.
    let end = start + 1;
    while (end < dn.length && /[0-9A-Fa-f]/.test(dn.charAt(end))) end++;
    if ((end - start - 1) % 2 !== 0 || end === start + 1) throw new DnSyntaxError('an invalid hex value');
    return { value: dn.slice(start, end), end };
  }
  if (dn[start] === '"') return readQuoted(dn, start + 1);
  let out = '';
  // out.length up to the last significant character: trailing unescaped spaces are not part of the value.
  let significant = 0;
  // Hex-escaped bytes (`\C3\A9`) are collected and decoded together as UTF-8.
  let pending: number[] | undefined;
  const flush = () => {
    if (!pending) return;
    out += decodeUtf8(pending);
    pending = undefined;
    significant = out.length;
  };
  let i = start;
  while (i < dn.length) {
    const c = dn.charCodeAt(i);
    if (c === 0x2c || c === 0x2b) break; // , +
    if (c === 0x5c) {
      const pair = dn.slice(i + 1, i + 3);
      if (HEX_PAIR.test(pair)) {
        (pending ??= []).push(parseInt(pair, 16));
        i += 3;
        continue;
      }
      flush();
      const next = dn[i + 1];
      if (next === undefined || !(MUST_ESCAPE.has(next) || next === ' ' || next === '#' || next === '=')) throw new DnSyntaxError('an invalid escape');
      out += next;
      significant = out.length;
      i += 2;
      continue;
    }
    flush();
    if (STOP.has(c)) throw new DnSyntaxError('an unescaped special character');
    // A run of plain characters, copied in one slice (the common case: the whole value).
    let j = i + 1;
    while (j < dn.length && !STOP.has(dn.charCodeAt(j)) && dn.charCodeAt(j) !== 0x2c && dn.charCodeAt(j) !== 0x2b && dn.charCodeAt(j) !== 0x5c) j++;
    const run = dn.slice(i, j);
    out += run;
    const kept = run.trimEnd().length;
    if (kept) significant = out.length - (run.length - kept);
    i = j;
  }
  flush();
  return { value: out.slice(0, significant), end: i };
}

const HEX_PAIR = /^[0-9A-Fa-f]{2}$/;
// Characters that may not appear unescaped in a value (besides the separators and the backslash).
const STOP = new Set([0x22, 0x3b, 0x3c, 0x3e, 0x00]); // " ; < > NUL

function readQuoted(dn: string, start: number): { value: string; end: number } {
  let i = start;
  let out = '';
  while (i < dn.length && dn[i] !== '"') {
    if (dn[i] === '\\' && i + 1 < dn.length) i++;
    out += dn.charAt(i);
    i++;
  }
  if (dn[i] !== '"') throw new DnSyntaxError('an unterminated quoted value');
  return { value: out, end: i + 1 };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(bytes: number[]): string {
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    throw new DnSyntaxError('a value that is not UTF-8');
  }
}

const NEEDS_ESCAPE = /[\\"+,;<>=\0]|^[ #]| $/;

/** Escapes an attribute value for use in a DN string (RFC 4514 §2.4). */
export function escapeDnValue(value: string): string {
  if (!NEEDS_ESCAPE.test(value)) return value;
  if (value.startsWith('#') && /^#(?:[0-9A-Fa-f]{2})+$/.test(value)) return value;
  let out = '';
  for (let i = 0; i < value.length; i++) {
    const c = value.charAt(i);
    if (MUST_ESCAPE.has(c) || c === '=') out += '\\' + c;
    else if (c === '\0') out += '\\00';
    else if ((i === 0 && (c === ' ' || c === '#')) || (i === value.length - 1 && c === ' ')) out += '\\' + c;
    else out += c;
  }
  return out;
}

/** Formats parsed RDNs as a DN string with canonical escaping (types and value case are kept). */
export function formatDN(rdns: readonly Rdn[]): string {
  return rdns.map((rdn) => rdn.map((a) => `${a.type}=${escapeDnValue(a.value)}`).join('+')).join(',');
}

/** A comparison key of one RDN: types and values case-folded, multi-valued RDNs sorted. */
function rdnKey(rdn: Rdn): string {
  return rdn
    .map((a) => `${a.type.toLowerCase()}=${a.value.toLowerCase().replace(/\s+/g, ' ')}`)
    .sort()
    .join('+');
}

/** A key for comparing DNs (case-insensitive, as the DN matching rules of AD and the usual OpenLDAP naming attributes are). */
export function dnKey(dn: string | readonly Rdn[]): string {
  const rdns = typeof dn === 'string' ? parseDN(dn) : dn;
  return rdns.map(rdnKey).join(',');
}

/** True when `dn` is `base` or lies below it, compared RDN by RDN. */
export function isUnderDN(dn: readonly Rdn[], base: readonly Rdn[]): boolean {
  if (dn.length < base.length) return false;
  const offset = dn.length - base.length;
  for (let i = 0; i < base.length; i++) {
    const a = dn[offset + i];
    const b = base[i];
    if (!a || !b || rdnKey(a) !== rdnKey(b)) return false;
  }
  return true;
}

/** Escapes a value for an RFC 4515 filter string: `*`, `(`, `)`, `\` and NUL become `\2a` … `\00`. */
export function escapeFilterValue(value: string): string {
  return value.replace(/[*()\\\0]/g, (c) => '\\' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

const NOT_PLAIN_DN = /[\\"+#;<>\0]|\s,|,\s|\s=|=\s|^\s|\s$/;

function countOf(text: string, ch: string): number {
  let n = 0;
  for (let i = text.indexOf(ch); i >= 0; i = text.indexOf(ch, i + 1)) n++;
  return n;
}

/**
 * One spelling per DN for output records: servers differ (`\2C` or `\,`),
 * and an id in listGrants must equal the same account's id in listAccounts.
 * A DN that does not parse is passed through as the server sent it.
 */
export function canonicalDN(dn: string): string {
  // Fast path (most DNs, and it matters at 100 000 a listing): nothing to escape, unescape or trim.
  if (!NOT_PLAIN_DN.test(dn) && countOf(dn, '=') === countOf(dn, ',') + 1) return dn;
  try {
    return formatDN(parseDN(dn));
  } catch {
    return dn;
  }
}

/**
 * Parses an RFC 4515 filter string. ldapts' parser forgives a missing `)`
 * at the end, so parentheses are counted first: a literal parenthesis in a
 * value is always escaped (`\28`), so every bare one is structure. Throws on
 * any error.
 */
export function parseFilterStrict(text: string): Filter {
  const t = text.trim();
  let depth = 0;
  for (let i = 0; i < t.length; i++) {
    const c = t[i];
    if (c === '\\') i += 2;
    else if (c === '(') depth++;
    else if (c === ')' && --depth < 0) throw new Error('unbalanced parentheses');
    else if (c === '\0') throw new Error('a NUL character');
  }
  if (depth !== 0) throw new Error('unbalanced parentheses');
  return FilterParser.parseString(t);
}
