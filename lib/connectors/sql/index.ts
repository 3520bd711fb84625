import type { ConnectorFactory } from '../types.js';
import { lazyConnector } from '../lazy.js';
import { parseOptions } from './options.js';
import { readCa } from './drivers/common.js';

export { SQL_KINDS, parseOptions, type SqlKind, type SqlResourceOptions } from './options.js';

/**
 * Builds the connector of one SQL resource (kinds postgres, mysql, mssql,
 * sqlite; see SqlResourceOptions for the config keys). Validates the config
 * (`config_error` naming `resources.<name>.<key>`) and reads the password
 * file at once; knex and the dialect's driver are imported, and the pool
 * made, on the first operation (lib/connectors/lazy.ts).
 */
export const createSqlConnector: ConnectorFactory = (name, config, deps) => {
  const opts = parseOptions(name, config, { readSecret: (path) => deps.readSecret(path), env: process.env });
  // An unreadable CA file is a config error at start, as before, not at the first job.
  readCa(opts);
  return lazyConnector(name, opts.kind, ['sql.query'], async () => new (await import('./connector.js')).SqlConnector(opts, deps));
};
