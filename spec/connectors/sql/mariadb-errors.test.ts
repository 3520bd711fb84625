import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import knexPkg, { type Knex } from 'knex';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import { toWireError } from '../../../lib/util/errors.js';
import { opContext, rejection, sqlDeps, uniquePrefix } from '../../fixtures/sql.js';

/**
 * MariaDB error 1698 (ER_ACCESS_DENIED_NO_PASSWORD_ERROR: access denied for a
 * user whose auth plugin refused the login, here unix_socket over TCP) is a
 * credentials problem, not `internal`; its message is the server's own text.
 */
const MYSQL_URL = process.env.MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test';
let admin: Knex;
const user = `${uniquePrefix()}_sock`;

beforeAll(async () => {
  admin = knexPkg({ client: 'mysql2', connection: MYSQL_URL, pool: { min: 0, max: 1 } });
  await admin.raw(`create user '${user}'@'%' identified via unix_socket`);
});

afterAll(async () => {
  await admin.raw(`drop user if exists '${user}'@'%'`);
  await admin.destroy();
});

describe('mariadb: access denied by an auth plugin (1698)', () => {
  it('maps to invalid_credentials with the server text, never the password', async () => {
    const u = new URL(MYSQL_URL);
    const c = createSqlConnector('sock', { kind: 'mysql', connection: { host: u.hostname, port: Number(u.port || 3306), user, password: 'Sock-Pw-42x', database: u.pathname.slice(1) } }, sqlDeps());
    try {
      const err = await rejection(c.checkResource({}, opContext().ctx));
      expect(toWireError(err)).toEqual({
        code: 'invalid_credentials',
        message: expect.stringMatching(new RegExp(`^mysql ER_ACCESS_DENIED_NO_PASSWORD_ERROR: Access denied for user '${user}'@`)),
        retryable: false,
      });
      expect(err.message).not.toContain('Sock-Pw-42x');
    } finally {
      await c.close();
    }
  }, 30_000);
});
