import { OutpostError } from '../../util/errors.js';

/** The queries model's statements and the named parameters each may use. */
export const STATEMENT_PARAMS = {
  checkResource: [],
  listAccounts: [],
  listEntitlements: [],
  listGrants: [],
  grant: ['accountId', 'entitlementId'],
  revoke: ['accountId', 'entitlementId'],
  setAccountEnabled: ['accountId', 'enabled'],
  // The account lifecycle (issue 12). createAccount and updateAccount may also use the
  // attributes allow-listed in `accounts.updatable` (bound as null when a payload leaves one out).
  getAccount: ['accountId'],
  createAccount: ['accountId', 'name', 'email', 'givenName', 'surname', 'displayName', 'enabled', 'password'],
  updateAccount: ['accountId'],
  deleteAccount: ['accountId'],
  setPassword: ['accountId', 'password', 'mustChange'],
  listAccountsSince: ['since'],
  accountsCursor: [],
  listGrantsNested: [],
} as const satisfies Record<string, readonly string[]>;
/** Statements whose parameters also include the allow-listed account attributes. */
export const ATTRIBUTE_STATEMENTS: ReadonlySet<string> = new Set(['createAccount', 'updateAccount']);
export type StatementName = keyof typeof STATEMENT_PARAMS;

/**
 * The same pattern knex uses for named bindings (`knex.raw(sql, {name})`):
 * `:name` binds a value, `:name:` an identifier, `\:` escapes. Mirroring it
 * exactly means the parameters we check are the ones knex will bind.
 */
const KNEX_NAMED = /\\?(:(\w+):(?=::)|:(\w+):(?!:)|:(\w+))/g;
/** Names a payload can carry (lib/protocol/operations.ts SqlQueryPayload); `:30` in `'12:30'` is not one. */
const PARAM_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The value parameters (`:name`) of a statement, and any identifier bindings (`:name:`), in order of first use. */
export function namedParams(sql: string): { values: string[]; identifiers: string[] } {
  const values = new Set<string>();
  const identifiers = new Set<string>();
  for (const m of sql.matchAll(KNEX_NAMED)) {
    if (m[0] !== m[1]) continue; // escaped with a backslash
    // `::int` is a PostgreSQL cast: knex leaves `:int` alone unless a value named `int` is given,
    // which bindParams then refuses as unexpected, so a payload can never rewrite a cast.
    if (m.index > 0 && sql[m.index - 1] === ':') continue;
    const ident = m[2] ?? m[3];
    if (ident !== undefined) {
      if (PARAM_NAME.test(ident)) identifiers.add(ident);
    } else if (m[4] !== undefined && PARAM_NAME.test(m[4])) {
      values.add(m[4]);
    }
  }
  return { values: [...values], identifiers: [...identifiers] };
}

/**
 * Checks a configured statement at load time: identifier bindings are refused
 * (a payload must never choose a table or column), and, when `allowed` is
 * given, only those parameter names may appear.
 */
export function checkStatementParams(sql: string, allowed: readonly string[] | null, fail: (why: string) => never): void {
  const { values, identifiers } = namedParams(sql);
  if (identifiers.length) fail(`identifier bindings (:${identifiers[0]}:) are not allowed; escape a literal colon as \\:`);
  if (allowed) {
    const extra = values.filter((v) => !allowed.includes(v));
    if (extra.length) {
      fail(`unknown parameter :${extra[0]}; this statement may use ${allowed.length ? allowed.map((a) => ':' + a).join(', ') : 'no parameters'}`);
    }
  }
}

export type ParamValue = string | number | boolean | null;

/**
 * Builds the named bindings for one run of `sql`: every `:name` it uses must
 * be given, and nothing else may be. Errors are `invalid_request` (a retry
 * cannot fix a payload) and name the parameters, never their values.
 */
export function bindParams(what: string, sql: string, params: Readonly<Record<string, ParamValue>>): Record<string, ParamValue> {
  const { values } = namedParams(sql);
  const given = Object.keys(params);
  const missing = values.filter((v) => !Object.prototype.hasOwnProperty.call(params, v));
  const extra = given.filter((g) => !values.includes(g));
  if (missing.length || extra.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing parameter${missing.length > 1 ? 's' : ''} ${missing.map((m) => ':' + m).join(', ')}`);
    if (extra.length) parts.push(`unexpected parameter${extra.length > 1 ? 's' : ''} ${extra.map((m) => ':' + m).join(', ')}`);
    throw new OutpostError('invalid_request', `${what}: ${parts.join('; ')}`);
  }
  const out: Record<string, ParamValue> = {};
  for (const v of values) out[v] = params[v] as ParamValue;
  return out;
}
