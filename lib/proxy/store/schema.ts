import type { Db } from './db.js';

const BIG = { sqlite: 'INTEGER', postgres: 'BIGINT' } as const;

/**
 * Idempotent schema creation, run at every start. Times are integer epoch
 * milliseconds from the injected Clock in both dialects, so lease expiry and
 * retry delays obey a FakeClock in tests.
 */
export async function migrate(db: Db): Promise<void> {
  const big = BIG[db.dialect];
  const statements = [
    `CREATE TABLE IF NOT EXISTS outpost_jobs (
      id TEXT PRIMARY KEY,
      pool TEXT NOT NULL,
      type TEXT NOT NULL,
      resource TEXT,
      payload TEXT NOT NULL,
      status TEXT NOT NULL,
      attempt INTEGER NOT NULL DEFAULT 0,
      max_attempts INTEGER NOT NULL,
      timeout_ms ${big} NOT NULL,
      idempotency_key TEXT,
      lease_token TEXT,
      result_token TEXT,
      agent_id TEXT,
      lease_expires_at ${big},
      available_at ${big} NOT NULL,
      leases INTEGER NOT NULL DEFAULT 0,
      result TEXT,
      error TEXT,
      output_records INTEGER NOT NULL DEFAULT 0,
      created_at ${big} NOT NULL,
      started_at ${big},
      finished_at ${big}
    )`,
    // Partial indexes: a claim or a result touches only the small index of its
    // state, not one that also holds every finished job.
    `CREATE INDEX IF NOT EXISTS outpost_jobs_queued ON outpost_jobs (pool, available_at, id) WHERE status = 'queued'`,
    `CREATE INDEX IF NOT EXISTS outpost_jobs_leased ON outpost_jobs (lease_expires_at) WHERE status = 'leased'`,
    // Listings page newest first by (created_at, id) of a pool; retention reads it oldest first. It
    // replaces (pool, created_at). No index on status: it cost the claim and result path ~40 %, and
    // every further full index costs each (non-HOT) update on PostgreSQL (bench/proxy-scale.ts
    // --hotpath). Open jobs are listed from the partial indexes above.
    `DROP INDEX IF EXISTS outpost_jobs_list`,
    `CREATE INDEX IF NOT EXISTS outpost_jobs_pool_created ON outpost_jobs (pool, created_at, id)`,
    `CREATE UNIQUE INDEX IF NOT EXISTS outpost_jobs_idem ON outpost_jobs (pool, idempotency_key)`,
    `CREATE TABLE IF NOT EXISTS outpost_output (
      job_id TEXT NOT NULL,
      lease_token TEXT NOT NULL,
      seq INTEGER NOT NULL,
      records TEXT NOT NULL,
      count INTEGER NOT NULL,
      PRIMARY KEY (job_id, lease_token, seq)
    )`,
    `CREATE TABLE IF NOT EXISTS outpost_tokens (
      hash TEXT PRIMARY KEY,
      pool TEXT NOT NULL,
      admin INTEGER NOT NULL,
      created_at ${big} NOT NULL
    )`,
    `CREATE INDEX IF NOT EXISTS outpost_tokens_pool ON outpost_tokens (pool)`,
    // Moved by every token revocation: replicas compare it to drop their auth caches (TokenStore.revision).
    `CREATE TABLE IF NOT EXISTS outpost_token_revision (id INTEGER PRIMARY KEY, revision ${big} NOT NULL)`,
    `INSERT INTO outpost_token_revision (id, revision) VALUES (1, 0) ON CONFLICT DO NOTHING`,
    `CREATE TABLE IF NOT EXISTS outpost_agents (
      pool TEXT NOT NULL,
      agent_id TEXT NOT NULL,
      hostname TEXT NOT NULL,
      version TEXT NOT NULL,
      resources TEXT NOT NULL,
      last_seen_at ${big} NOT NULL,
      PRIMARY KEY (pool, agent_id)
    )`,
    `CREATE INDEX IF NOT EXISTS outpost_agents_seen ON outpost_agents (last_seen_at)`,
    // One row per ended lease of a job (attempts.ts): who ran it, when, how it ended; the lease on the job
    // row is read from there, so a claim and a success write none. One index (the key); SQLite keeps
    // the rows in it (WITHOUT ROWID).
    `CREATE TABLE IF NOT EXISTS outpost_job_attempts (
      job_id TEXT NOT NULL,
      lease_token TEXT NOT NULL,
      attempt INTEGER NOT NULL,
      agent_id TEXT NOT NULL,
      started_at ${big} NOT NULL,
      ended_at ${big},
      outcome TEXT NOT NULL,
      error TEXT,
      PRIMARY KEY (job_id, lease_token)
    )${db.dialect === 'sqlite' ? ' WITHOUT ROWID' : ''}`,
    // A pool's public sealing key (secrets in payloads): the job side seals passwords with it (store/pools.ts).
    `CREATE TABLE IF NOT EXISTS outpost_pool_keys (
      pool TEXT PRIMARY KEY,
      public_key TEXT NOT NULL,
      algorithm TEXT NOT NULL,
      updated_at ${big} NOT NULL
    )`,
    // Output bytes kept per pool: the per-pool quota is checked without summing the pool's pages.
    `CREATE TABLE IF NOT EXISTS outpost_pool_usage (
      pool TEXT PRIMARY KEY,
      output_bytes ${big} NOT NULL DEFAULT 0
    )`,
  ];
  // Columns added after the first release, then the indexes that use them.
  const columns: Array<[string, string, string]> = [
    ['outpost_jobs', 'expires_at', big],
    ['outpost_jobs', 'output_bytes', `${big} NOT NULL DEFAULT 0`],
    ['outpost_output', 'bytes', `${big} NOT NULL DEFAULT 0`],
    // Token lifecycle: a public id (list, revoke), a role, expiry, revocation, last use.
    ['outpost_tokens', 'id', 'TEXT'],
    ['outpost_tokens', 'role', 'TEXT'],
    ['outpost_tokens', 'expires_at', big],
    ['outpost_tokens', 'revoked_at', big],
    ['outpost_tokens', 'last_used_at', big],
    // Presence (agents.ts): a goodbye (draining | offline, '' otherwise) and when the proxy expects the next contact.
    ['outpost_agents', 'state', "TEXT NOT NULL DEFAULT ''"],
    ['outpost_agents', 'contact_by', big],
    // When the current lease began: its attempt's start (attempts.ts), without an attempt row per claim.
    ['outpost_jobs', 'leased_at', big],
  ];
  const late = [
    // The expiry sweep reads queued jobs past their time (partial: only queued jobs are in it).
    `CREATE INDEX IF NOT EXISTS outpost_jobs_expiry ON outpost_jobs (expires_at) WHERE status = 'queued'`,
    // Failed jobs of a pool, newest first, without walking its succeeded ones (operators and the peer
    // benchmark list them); partial, so it costs only the failures.
    `CREATE INDEX IF NOT EXISTS outpost_jobs_failed ON outpost_jobs (pool, created_at, id) WHERE status = 'failed'`,
    // Tokens made before roles: an admin flag becomes role admin, else agent; each gets a random id.
    `UPDATE outpost_tokens SET role = CASE WHEN admin = 1 THEN 'admin' ELSE 'agent' END WHERE role IS NULL`,
    db.dialect === 'postgres'
      ? `UPDATE outpost_tokens SET id = 'tok_' || substr(md5(random()::text || hash), 1, 12) WHERE id IS NULL`
      : `UPDATE outpost_tokens SET id = 'tok_' || lower(hex(randomblob(6))) WHERE id IS NULL`,
    `CREATE UNIQUE INDEX IF NOT EXISTS outpost_tokens_id ON outpost_tokens (id)`,
  ];
  if (db.dialect === 'postgres') {
    // Two replicas starting together must not race on CREATE … IF NOT EXISTS.
    await db.knex.transaction(async (trx) => {
      await trx.raw('SELECT pg_advisory_xact_lock(7242001)');
      for (const s of statements) await trx.raw(s);
      for (const [table, column, type] of columns) await trx.raw(`ALTER TABLE ${table} ADD COLUMN IF NOT EXISTS ${column} ${type}`);
      for (const s of late) await trx.raw(s);
    });
    return;
  }
  const c = db.sqlite;
  c.transaction(() => {
    for (const s of statements) c.exec(s);
    for (const [table, column, type] of columns) {
      const present = c.all<{ name: string }>(`PRAGMA table_info(${table})`);
      if (!present.some((p) => p.name === column)) c.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
    }
    for (const s of late) c.exec(s);
  });
}
