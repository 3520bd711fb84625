import type { Db } from './db.js';

/** The PostgreSQL channel on which replicas tell each other that work is available. */
export const NOTIFY_CHANNEL = 'outpost_jobs';
/** The PostgreSQL channel on which a token revocation is announced (payload: the token id), so replicas drop their auth caches at once. */
export const TOKENS_CHANNEL = 'outpost_tokens';

/** What the store tells the rest of the proxy when the queue changes. */
export interface StoreEvents {
  /** Jobs of `pool` became available to lease (enqueued, released, expired): one entry per job, its resource. */
  available(pool: string, resources: ReadonlyArray<string | null>): void;
  /** A job of `pool` becomes available at `atMs` (a retry after backoff). */
  availableAt(pool: string, resource: string | null, atMs: number): void;
  /** A job changed state (used to answer `GET /v1/jobs/{id}?waitMs`). */
  changed(jobId: string): void;
}

/** Jobs that became available, by pool: the resource of each job. */
export type Available = Map<string, Array<string | null>>;

/** Notes one available job. */
export function bump(av: Available, pool: string, resource: string | null): void {
  const list = av.get(pool);
  if (list) list.push(resource);
  else av.set(pool, [resource]);
}

/**
 * A notification payload: `<replicaId> <pool> <resource>=<count> …`, with `-`
 * for jobs without resource. Counted per resource, so that a batch of 1 000
 * jobs fits PostgreSQL's 8 000-byte limit (pool and resource names hold no
 * spaces or `=`).
 */
export function notifyPayload(replicaId: string, pool: string, resources: ReadonlyArray<string | null>): string {
  const counts = new Map<string, number>();
  for (const r of resources) counts.set(r ?? '-', (counts.get(r ?? '-') ?? 0) + 1);
  return [replicaId, pool, ...[...counts].map(([r, n]) => `${r}=${n}`)].join(' ').slice(0, 7900);
}

export function parseNotifyPayload(payload: string): { replicaId: string; pool: string; resources: Array<string | null> } | null {
  const [replicaId, pool, ...rest] = payload.split(' ');
  if (!replicaId || !pool) return null;
  const resources: Array<string | null> = [];
  for (const part of rest) {
    const m = /^(.+)=(\d+)$/.exec(part);
    const name = m?.[1];
    const count = m?.[2];
    if (name === undefined || count === undefined) continue;
    for (let i = 0; i < Math.min(Number(count), 10_000); i++) resources.push(name === '-' ? null : name);
  }
  return { replicaId, pool, resources };
}

/**
 * Tells that work is available, once its rows are committed: this replica's
 * parked polls first (they need not wait for a round trip), then the other
 * replicas by NOTIFY (PostgreSQL only). A NOTIFY lost to a stop in between is
 * made up by the replicas' periodic re-check.
 */
export async function tellAvailable(db: Db, events: StoreEvents, replicaId: string, av: Available): Promise<void> {
  for (const [pool, resources] of av) if (resources.length) events.available(pool, resources);
  if (db.dialect !== 'postgres') return;
  for (const [pool, resources] of av) {
    if (resources.length) await db.knex.raw('SELECT pg_notify(?, ?)', [NOTIFY_CHANNEL, notifyPayload(replicaId, pool, resources)]);
  }
}
