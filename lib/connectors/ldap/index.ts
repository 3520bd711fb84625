import type { LdapSearchPayload } from '../../protocol/operations.js';
import type { Connector, ConnectorFactory } from '../types.js';
import { grant, revoke, setAccountEnabled } from './changes.js';
import { parseLdapConfig } from './config.js';
import { listAccounts } from './delta.js';
import { createAccount, deleteAccount, getAccount, updateAccount } from './lifecycle.js';
import { listEntitlements, listGrants } from './listings.js';
import { listGrantsNested } from './nested.js';
import { setPassword } from './passwords.js';
import { LdapPool } from './pool.js';
import { checkResource, ldapSearch } from './query.js';

export { LdapResourceSchema, parseLdapConfig, type LdapResourceConfig, type LdapSettings } from './config.js';
export { LDAP_RESULT_CODES, mapLdapError } from './errors.js';
export { escapeDnValue, escapeFilterValue, formatDN, isUnderDN, parseDN } from './dn.js';

/**
 * The LDAP connector (`kind: "ldap"`): OpenLDAP and Active Directory.
 * Validates the resource config at once (throws `config_error` naming
 * `resources.<name>.<key>`), connects lazily on the first operation and
 * keeps a small pool of bound connections until `close()`.
 */
export const createLdapConnector: ConnectorFactory = (name, config, deps): Connector => {
  const s = parseLdapConfig(name, config, deps);
  const pool = new LdapPool(s, deps.log, deps.clock);
  return {
    kind: 'ldap',
    checkResource: (_p, ctx) => checkResource(pool, s, deps.clock, ctx),
    listAccounts: (p, ctx) => listAccounts(pool, s, p, deps.clock, ctx),
    listEntitlements: (_p, ctx) => listEntitlements(pool, s, ctx),
    listGrants: (p, ctx) => (p?.nested ? listGrantsNested(pool, s, ctx) : listGrants(pool, s, ctx)),
    grant: (p, ctx) => grant(pool, s, p, ctx),
    revoke: (p, ctx) => revoke(pool, s, p, ctx),
    setAccountEnabled: (p, ctx) => setAccountEnabled(pool, s, p, ctx),
    getAccount: (p, ctx) => getAccount(pool, s, p, ctx),
    createAccount: (p, ctx) => createAccount(pool, s, p, ctx),
    updateAccount: (p, ctx) => updateAccount(pool, s, p, ctx),
    deleteAccount: (p, ctx) => deleteAccount(pool, s, p, ctx),
    setPassword: (p, ctx) => setPassword(pool, s, p, ctx),
    extra: {
      'ldap.search': (p: LdapSearchPayload, ctx) => ldapSearch(pool, s, p, ctx),
    },
    close: () => pool.close(),
  };
};
