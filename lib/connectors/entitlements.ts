/**
 * The `entitlements` allow-list of a resource (SQL and LDAP alike) and the
 * glob patterns it is written in.
 *
 * Pattern syntax (one definition, also used for LDAP `search.forbiddenAttributes`):
 * - `*` matches any run of characters, including none (also `,` in a DN);
 * - `?` matches exactly one character;
 * - `\` makes the next character literal (`\*`, `\?`, `\\`);
 * - everything else is literal, and a pattern always matches the whole id
 *   (it is anchored at both ends: `app_*` does not match `x_app_1`).
 * Matching is case-sensitive, except where the names themselves are not
 * (LDAP DNs and attribute names, SQL Server principals).
 *
 * Patterns are compiled here into literal segments and matched left to right
 * without backtracking (each segment is placed at its leftmost position,
 * which is optimal for fixed-length segments between stars), so a hostile
 * pattern or id costs at most O(id length × pattern length). No regular
 * expression is built from configuration.
 */
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { OutpostError } from '../util/errors.js';

/** Longest pattern accepted (characters). */
export const MAX_PATTERN_LENGTH = 512;
/** Most patterns per list. */
export const MAX_PATTERNS = 200;

const Pattern = Type.String({ minLength: 1, maxLength: MAX_PATTERN_LENGTH });
const PatternList = Type.Array(Pattern, { maxItems: MAX_PATTERNS });

/**
 * `entitlements` on a resource: which of the entitlements the connector
 * would offer may be listed, granted and revoked.
 * - `include`: patterns of allowed entitlement ids. Default `["*"]` (all).
 * - `exclude`: patterns of refused ids; wins over `include`. Default none.
 */
export const EntitlementsSchema = Type.Object({ include: Type.Optional(PatternList), exclude: Type.Optional(PatternList) }, { additionalProperties: false });
export type EntitlementsConfig = Static<typeof EntitlementsSchema>;

/** A compiled glob: true when the whole text matches. */
export type GlobMatcher = (text: string) => boolean;

const ANY_ONE = -1;
const BACKSLASH = 0x5c;
const STAR = 0x2a;
const QUESTION = 0x3f;

/** The code points of a text (Array.from splits by code point, so each part has exactly one). */
const codePoints = (s: string): number[] => Array.from(s, (c) => c.codePointAt(0) ?? 0);

/** Compiles one glob (syntax above); throws a plain Error on a dangling escape. */
export function compileGlob(pattern: string, opts: { caseInsensitive?: boolean } = {}): GlobMatcher {
  const fold = opts.caseInsensitive ? (s: string) => s.toLowerCase() : (s: string) => s;
  // Segments between stars; each token is a code point, or ANY_ONE for `?`.
  const first: number[] = [];
  const rest: number[][] = [];
  let current = first;
  let escaped = false;
  for (const c of codePoints(fold(pattern))) {
    if (escaped) {
      current.push(c);
      escaped = false;
    } else if (c === BACKSLASH) escaped = true;
    else if (c === STAR) {
      current = [];
      rest.push(current);
    } else if (c === QUESTION) current.push(ANY_ONE);
    else current.push(c);
  }
  if (escaped) throw new Error('a pattern ends with an unpaired "\\"');
  const at = (text: number[], pos: number, seg: number[]): boolean => {
    for (let k = 0; k < seg.length; k++) if (seg[k] !== ANY_ONE && seg[k] !== text[pos + k]) return false;
    return true;
  };
  const last = rest.at(-1);
  const middle = rest.slice(0, -1);
  return (input: string) => {
    const text = codePoints(fold(input));
    if (last === undefined) return text.length === first.length && at(text, 0, first);
    if (text.length < first.length + last.length) return false;
    if (!at(text, 0, first) || !at(text, text.length - last.length, last)) return false;
    let pos = first.length;
    const end = text.length - last.length;
    for (const seg of middle) {
      let found = -1;
      for (let p = pos; p + seg.length <= end; p++) {
        if (at(text, p, seg)) {
          found = p;
          break;
        }
      }
      if (found < 0) return false;
      pos = found + seg.length;
    }
    return true;
  };
}

/** Any of the patterns matches. */
export function compileGlobs(patterns: readonly string[], opts: { caseInsensitive?: boolean } = {}): GlobMatcher {
  const all = patterns.map((p) => compileGlob(p, opts));
  return (text) => all.some((m) => m(text));
}

/** A resource's compiled allow-list. */
export interface EntitlementRules {
  /** `resources.<name>.entitlements`, for messages. */
  readonly key: string;
  /** Whether the id passes include and exclude. */
  allows(id: string): boolean;
  /** Throws a non-retryable `forbidden` naming the list when the id does not pass. Never echoes the id. */
  check(id: string, field?: string): void;
}

const checkConfig = TypeCompiler.Compile(EntitlementsSchema);

/**
 * Validates and compiles `resources.<resource>.entitlements` (absent = allow
 * everything the connector offers). Throws `config_error` naming the key.
 */
export function compileEntitlements(resource: string, raw: unknown, opts: { caseInsensitive?: boolean } = {}): EntitlementRules {
  const key = `resources.${resource}.entitlements`;
  if (raw !== undefined && raw !== null && !checkConfig.Check(raw)) {
    const e = checkConfig.Errors(raw).First();
    const where = e?.path ? `${key}${e.path.replace(/\//g, '.')}` : key;
    throw new OutpostError('config_error', `${where}: ${e?.message ?? 'invalid'} (an object {include?: [patterns], exclude?: [patterns]})`);
  }
  const c: EntitlementsConfig = raw ?? {};
  const compile = (list: string[] | undefined, which: string): GlobMatcher | undefined => {
    if (list === undefined) return undefined;
    try {
      return compileGlobs(list, opts);
    } catch (err) {
      throw new OutpostError('config_error', `${key}.${which}: ${(err as Error).message}`);
    }
  };
  const include = compile(c.include, 'include');
  const exclude = compile(c.exclude, 'exclude');
  const allows = (id: string): boolean => (include ? include(id) : true) && !(exclude ? exclude(id) : false);
  return {
    key,
    allows,
    check(id, field = 'entitlementId') {
      if (include && !include(id)) throw new OutpostError('forbidden', `${field} matches no pattern of ${key}.include, so it is not an entitlement here`);
      if (exclude?.(id)) throw new OutpostError('forbidden', `${field} matches ${key}.exclude, so it is not an entitlement here`);
    },
  };
}
