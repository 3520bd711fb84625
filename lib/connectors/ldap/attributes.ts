/**
 * Which attributes `ldap.search` may return, and so may name in its filter.
 *
 * The rule: a filter may only test attributes the search may return,
 * because testing an attribute is reading it one guess at a time
 * (`(&(uid=u1)(userPassword=guess))` answers 1 or 0 records). The returnable
 * set is the resource's `search.attributes` (plus `objectClass`), or any
 * attribute when that is not configured; password attributes (the built-in
 * list below and `search.forbiddenAttributes`) are never returnable. A
 * filter may name any returnable attribute, whether or not this request
 * asks for it: asking for it would show the same values.
 */
import {
  AndFilter,
  ApproximateFilter,
  EqualityFilter,
  ExtensibleFilter,
  GreaterThanEqualsFilter,
  LessThanEqualsFilter,
  NotFilter,
  OrFilter,
  PresenceFilter,
  SubstringFilter,
  type Filter,
} from 'ldapts';
import { OutpostError } from '../../util/errors.js';
import { compileGlobs, type GlobMatcher } from '../entitlements.js';
import { SECRET_ATTRIBUTES } from './entries.js';

/** Password material by pattern, besides the exact names of SECRET_ATTRIBUTES: Windows LAPS (all its attributes). */
export const SECRET_ATTRIBUTE_PATTERNS: readonly string[] = ['msLAPS-*'];

/** A numeric OID used as an attribute name: its name (and so whether it is a password) is unknown here. */
const NUMERIC_OID = /^\d+(?:\.\d+)*$/;

/** The attribute type of a description: options (`;binary`, `;range=…`) cut off, lower case. */
export function attributeType(description: string): string {
  const semi = description.indexOf(';');
  return (semi < 0 ? description : description.slice(0, semi)).toLowerCase();
}

export class AttributePolicy {
  private readonly secretPattern: GlobMatcher;
  /** Lower-case types `ldap.search` may return; undefined = any that is not forbidden. */
  readonly returnable: ReadonlySet<string> | undefined;

  /**
   * @param returnable `search.attributes` (objectClass is always added), or undefined for any attribute.
   * @param forbidden `search.forbiddenAttributes`: extra patterns (lib/connectors/entitlements.ts syntax), case-insensitive.
   */
  constructor(returnable: readonly string[] | undefined, forbidden: readonly string[] = []) {
    this.secretPattern = compileGlobs([...SECRET_ATTRIBUTE_PATTERNS, ...forbidden], { caseInsensitive: true });
    this.returnable = returnable ? new Set([...returnable.map(attributeType), 'objectclass']) : undefined;
  }

  /** A password attribute: never returned, never named in a filter. */
  forbidden(description: string): boolean {
    const type = attributeType(description);
    return SECRET_ATTRIBUTES.has(type) || this.secretPattern(type);
  }

  /** Whether a search may return this attribute (and so name it in a filter). */
  mayReturn(description: string): boolean {
    const type = attributeType(description);
    if (!type || NUMERIC_OID.test(type) || this.forbidden(type)) return false;
    return this.returnable ? this.returnable.has(type) : true;
  }

  /**
   * The attribute list to send for a request's `attributes`: names it may
   * not return are left out (as before: they are simply not returned);
   * `*` (or no list) means the returnable set when one is configured.
   * A request that named attributes and keeps none is refused.
   */
  requested(resource: string, attributes: readonly string[]): string[] {
    const wantsAll = attributes.length === 0 || attributes.includes('*');
    const named = attributes.filter((a) => a !== '*' && a !== '+' && a !== '1.1');
    if (attributes.includes('1.1') && attributes.length === 1) return ['1.1'];
    const kept = named.filter((a) => this.mayReturn(a));
    if (!this.returnable) {
      const out = [...(wantsAll && attributes.length ? ['*'] : []), ...(attributes.includes('+') ? ['+'] : []), ...kept];
      if (attributes.length && !out.length) throw new OutpostError('forbidden', `ldap ${resource}: attributes names nothing that may be returned: password attributes are never returned`);
      return out;
    }
    const out = wantsAll || attributes.includes('+') ? [...new Set([...this.returnable, ...kept.map(attributeType)])] : kept;
    if (!out.length) throw new OutpostError('forbidden', `ldap ${resource}: attributes names none of the attributes this resource returns (search.attributes); password attributes are never returned`);
    return out;
  }

  /**
   * Walks a parsed filter and refuses (non-retryable `forbidden`) any
   * attribute the search may not return. An extensible match without an
   * attribute (`(:caseExactMatch:=x)`) tests every attribute of the entry,
   * passwords included, so it is refused too. Unknown filter kinds are refused.
   */
  checkFilter(resource: string, filter: Filter): void {
    const refuse = (why: string): never => {
      throw new OutpostError('forbidden', `ldap ${resource}: the filter ${why}`);
    };
    // Names from the payload are not echoed: an error message must not repeat what a caller guessed.
    const named = (attr: string): void => {
      if (this.forbidden(attr)) refuse('names a password attribute (userPassword, unicodePwd, ms-Mcs-AdmPwd, msLAPS-*, search.forbiddenAttributes …), which a filter may never test');
      if (NUMERIC_OID.test(attributeType(attr))) refuse('names an attribute by numeric OID; name it by its attribute name');
      if (!this.mayReturn(attr)) refuse('names an attribute this resource never returns (search.attributes), so a filter may not test it');
    };
    const stack: Filter[] = [filter];
    let nodes = 0;
    while (stack.length) {
      const f = stack.pop();
      if (f === undefined) break;
      // The filter text is bounded by the payload schema; this bounds the walk whatever the parser did.
      if (++nodes > 10_000) refuse('is too complex');
      if (f instanceof AndFilter || f instanceof OrFilter) stack.push(...f.filters);
      else if (f instanceof NotFilter) stack.push(f.filter);
      else if (f instanceof ExtensibleFilter) {
        if (!f.matchType) refuse('is an extensible match without an attribute, which would test every attribute (passwords too)');
        named(f.matchType);
      } else if (
        f instanceof EqualityFilter ||
        f instanceof SubstringFilter ||
        f instanceof PresenceFilter ||
        f instanceof GreaterThanEqualsFilter ||
        f instanceof LessThanEqualsFilter ||
        f instanceof ApproximateFilter
      ) {
        named(f.attribute);
      } else refuse('holds a kind of filter that cannot be checked');
    }
  }
}
