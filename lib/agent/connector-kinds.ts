import { createLdapConnector } from '../connectors/ldap/index.js';
import { createSqlConnector } from '../connectors/sql/index.js';
import type { ConnectorFactory } from '../connectors/types.js';

/**
 * Connector factories by resource `kind` (`ldap`, `postgres`, `mysql`,
 * `mssql`…). Left empty here: the LDAP and SQL connectors are wired in by
 * the lead; tests pass their own through `createAgent`'s `connectorKinds`.
 */
export const CONNECTOR_KINDS: Record<string, ConnectorFactory> = {
  ldap: createLdapConnector,
  postgres: createSqlConnector,
  mysql: createSqlConnector,
  mssql: createSqlConnector,
  sqlite: createSqlConnector,
};
