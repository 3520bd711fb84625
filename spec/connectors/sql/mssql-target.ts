import { randomBytes } from 'node:crypto';
import knexPkg, { type Knex } from 'knex';
import type { SqlTarget } from './conformance.js';

/**
 * The conformance target for a real SQL Server (`MSSQL_URL`, e.g.
 * `mssql://sa:Passw0rd!@127.0.0.1:1433/master`): a scratch database per run,
 * logins and roles uniquely prefixed, all dropped at the end.
 */
export function mssqlTarget(serverUrl: string): SqlTarget {
  const u = new URL(serverUrl);
  const name = `outpost_sql_${randomBytes(5).toString('hex')}`;
  const conn = (database: string) => ({
    server: u.hostname,
    port: Number(u.port || 1433),
    user: decodeURIComponent(u.username),
    password: decodeURIComponent(u.password),
    database,
    options: { encrypt: true, trustServerCertificate: true },
  });
  let server: Knex;
  let admin: Knex;
  const rows = async (sql: string, bindings: unknown[] = []) => (await admin.raw(sql, bindings as never)) as unknown as Record<string, unknown>[];
  const q = (n: string) => `[${n.replace(/]/g, ']]')}]`;
  const resource = () => ({
    kind: 'mssql',
    connection: { host: u.hostname, port: Number(u.port || 1433), user: decodeURIComponent(u.username), password: decodeURIComponent(u.password), database: name },
    tls: { rejectUnauthorized: false },
  });
  return {
    kind: 'mssql',
    async setup() {
      server = knexPkg({ client: 'mssql', connection: conn('master'), pool: { min: 0, max: 1 } });
      await server.raw(`create database ${q(name)}`);
      admin = knexPkg({ client: 'mssql', connection: conn(name), pool: { min: 0, max: 2 } });
    },
    async teardown() {
      await admin.destroy();
      await server.raw(`alter database ${q(name)} set single_user with rollback immediate`);
      await server.raw(`drop database ${q(name)}`);
      await server.destroy();
    },
    resource,
    admin: rows,
    async createAppSchema() {
      await rows(`create table app_users (id nvarchar(200) primary key, uid int, full_name nvarchar(200), email nvarchar(200),
                    active bit not null default 1, dept nvarchar(50))`);
      await rows('create table app_groups (id nvarchar(200) primary key, title nvarchar(200), description nvarchar(200))');
      await rows('create table app_members (user_id nvarchar(200), group_id nvarchar(200), primary key (user_id, group_id))');
      await rows('create table big (id int primary key, name nvarchar(50))');
      await rows(`insert into app_users values ('alice', 1, 'Alice A', 'alice@example.org', 1, 'it'), ('bob', 2, 'Bob B', null, 0, 'hr')`);
      await rows(`insert into app_groups values ('admins', null, 'all powers'), ('readers', null, null)`);
      await rows(`insert into app_members values ('alice', 'readers')`);
      await rows(`insert into big select top 100000 n, concat('row ', n) from
                    (select row_number() over (order by (select null)) as n from sys.all_objects a cross join sys.all_objects b) s`);
    },
    grantStatement: `insert into app_members (user_id, group_id) select :accountId, :entitlementId
                      where not exists (select 1 from app_members where user_id = :accountId and group_id = :entitlementId)`,
    sleep: {
      sql: `waitfor delay '00:00:30'`,
      running: async () =>
        Number((await rows(`select count(*) as n from sys.dm_exec_requests r cross apply sys.dm_exec_sql_text(r.sql_handle) t where t.text = 'waitfor delay ''00:00:30'''`))[0]!.n),
    },
    native: {
      resource,
      async create(prefix) {
        const p = { account: `${prefix}_alice`, role: `${prefix}_readers`, oddRole: `${prefix}_o"k.r\`x [y]` };
        await server.raw(`create login ${q(p.account)} with password = '${randomBytes(12).toString('hex')}Aa1!'`);
        await rows(`create user ${q(p.account)} for login ${q(p.account)}`);
        await rows(`create role ${q(p.role)}`);
        await rows(`create role ${q(p.oddRole)}`);
        return p;
      },
      exists: async (n) => (await rows('select 1 as x from sys.database_principals where name = ?', [n])).length > 0,
      async drop(prefix) {
        for (const r of await rows(`select name, type from sys.database_principals where name like ?`, [`${prefix}%`])) {
          await rows(r.type === 'R' ? `drop role ${q(String(r.name))}` : `drop user ${q(String(r.name))}`);
        }
        for (const r of (await server.raw(`select name from sys.server_principals where name like ?`, [`${prefix}%`])) as unknown as Array<{ name: string }>) {
          await server.raw(`drop login ${q(r.name)}`);
        }
      },
    },
  };
}
