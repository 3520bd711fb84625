import type { Clock } from '../../util/clock.js';
import { SEALED_BOX_ALGORITHM } from '../../protocol/schemas.js';
import { run, type Db } from './db.js';

/**
 * Per-pool settings kept by the proxy. Today: the pool's public sealing key
 * (secrets in payloads). The private key never reaches the proxy: the pool's
 * agents hold it (`sealing.privateKeyFile`), so the store, its backups and a
 * proxy operator see sealed boxes only.
 */
export interface PoolKey {
  pool: string;
  /** X25519 public key, standard base64 (checked by the route's schema). */
  publicKey: string;
  algorithm: typeof SEALED_BOX_ALGORITHM;
  /** Epoch ms of the last set. */
  updatedAt: number;
}

export interface PoolStoreDeps {
  db: Db;
  clock: Clock;
}

interface KeyRow {
  pool: string;
  public_key: string;
  algorithm: string;
  updated_at: number | string;
}

export class PoolStore {
  constructor(private readonly deps: PoolStoreDeps) {}

  /** Sets (or replaces) a pool's public key. Jobs already sealed with an older key fail to open on the agent: rotate keys between jobs. */
  async setKey(pool: string, publicKey: string): Promise<PoolKey> {
    const now = this.deps.clock.now();
    await run(
      this.deps.db,
      `INSERT INTO outpost_pool_keys (pool, public_key, algorithm, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (pool) DO UPDATE SET public_key = excluded.public_key, algorithm = excluded.algorithm, updated_at = excluded.updated_at`,
      [pool, publicKey, SEALED_BOX_ALGORITHM, now],
    );
    return { pool, publicKey, algorithm: SEALED_BOX_ALGORITHM, updatedAt: now };
  }

  /** A pool's public key, or undefined when none was set. */
  async getKey(pool: string): Promise<PoolKey | undefined> {
    const [row] = await run<KeyRow>(this.deps.db, 'SELECT pool, public_key, algorithm, updated_at FROM outpost_pool_keys WHERE pool = ?', [pool]);
    if (!row) return undefined;
    return { pool: row.pool, publicKey: row.public_key, algorithm: SEALED_BOX_ALGORITHM, updatedAt: Number(row.updated_at) };
  }
}
