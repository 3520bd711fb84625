import type { ConnectorFactory } from '../types.js';
import { SqlConnector } from './connector.js';
import { parseOptions } from './options.js';

export { SqlConnector } from './connector.js';
export { SQL_KINDS, parseOptions, type SqlKind, type SqlResourceOptions } from './options.js';
export { mapSqlError } from './errors.js';

/**
 * Builds the connector of one SQL resource (kinds postgres, mysql, mssql,
 * sqlite; see SqlResourceOptions for the config keys). Validates the config
 * (`config_error` naming `resources.<name>.<key>`), reads the password file,
 * and connects lazily on the first operation.
 */
export const createSqlConnector: ConnectorFactory = (name, config, deps) =>
  new SqlConnector(parseOptions(name, config, { readSecret: deps.readSecret, env: process.env }), deps);
