import { SECRET_FIELDS } from '../../protocol/operations.js';
import type { Dialect } from './db.js';

/*
 * The secret fields of each job type's payload (lib/protocol/operations.ts
 * `SECRET_FIELDS`, the table the agent's dispatcher opens). A job's stored
 * payload keeps them only while the job is live (the lease answer carries the
 * sealed box to the agent); every statement that ends a job (succeeded,
 * failed, cancelled, expired, lease lost for good) removes them in the same
 * statement, so no finished row keeps a sealed box or a plain password.
 */

const FIELD = /^[A-Za-z][A-Za-z0-9]*$/;

function removeFields(dialect: Dialect, fields: readonly string[]): string {
  for (const f of fields) if (!FIELD.test(f)) throw new Error(`bad secret field name ${f}`);
  if (dialect === 'postgres') return `(${fields.reduce((e, f) => `${e} - '${f}'`, 'payload::jsonb')})::text`;
  return `json_remove(payload, ${fields.map((f) => `'$.${f}'`).join(', ')})`;
}

/**
 * `payload = CASE …` for an UPDATE's SET list: the secret fields removed for the
 * job types that have them, payload unchanged otherwise. `when` (an SQL
 * condition on the old row, e.g. `attempt >= max_attempts`) limits it to the
 * rows the statement actually ends. No bindings: safe in any SET list.
 */
export function wipeSecretsSql(dialect: Dialect, when?: string): string {
  const key = `${dialect}\u0000${when ?? ''}`;
  let sql = built.get(key);
  if (sql === undefined) built.set(key, (sql = build(dialect, when)));
  return sql;
}

/** Built once per (dialect, condition): the results path runs it for every batch. */
const built = new Map<string, string>();

function build(dialect: Dialect, when: string | undefined): string {
  const branches = Object.entries(SECRET_FIELDS).map(
    ([type, fields]) => `WHEN type = '${type}'${when ? ` AND (${when})` : ''} THEN ${removeFields(dialect, fields)}`,
  );
  return `payload = CASE ${branches.join(' ')} ELSE payload END`;
}
