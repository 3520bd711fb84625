import type { ConnectorFactory } from '../connectors/types.js';

const sql = async (): Promise<ConnectorFactory> => (await import('../connectors/sql/index.js')).createSqlConnector;

/**
 * Connector factories by resource `kind` (`ldap`, `postgres`, `mysql`,
 * `mssql`, `sqlite`), each behind a dynamic import: the LDAP connector
 * (ldapts) and the SQL one (knex and its drivers) cost about 16–20 MB of RSS
 * and 60+ ms of start-up each, so an agent loads only the kinds it serves.
 */
export const CONNECTOR_LOADERS: Readonly<Record<string, () => Promise<ConnectorFactory>>> = {
  ldap: async () => (await import('../connectors/ldap/index.js')).createLdapConnector,
  postgres: sql,
  mysql: sql,
  mssql: sql,
  sqlite: sql,
};

/**
 * The factories for every known kind, loading only those in `kinds` (the
 * configured resources' kinds). The others stay unloaded placeholders, listed
 * so that an unknown kind is still reported with every known one.
 */
export async function loadConnectorKinds(kinds: Iterable<string>): Promise<Record<string, ConnectorFactory>> {
  const wanted = new Set(kinds);
  const out: Record<string, ConnectorFactory> = {};
  for (const [kind, load] of Object.entries(CONNECTOR_LOADERS)) {
    out[kind] = wanted.has(kind)
      ? await load()
      : () => {
          throw new Error(`the ${kind} connector was not loaded`);
        };
  }
  return out;
}
