import { randomBytes } from 'node:crypto';
import type { JobError, JobStatus, JobView } from '../../protocol/schemas.js';

/** A row of `outpost_jobs` as the drivers return it (PostgreSQL BIGINTs arrive as strings). */
export interface JobRow {
  id: string;
  pool: string;
  type: string;
  resource: string | null;
  payload: string;
  status: JobStatus;
  attempt: number | string;
  max_attempts: number | string;
  timeout_ms: number | string;
  idempotency_key: string | null;
  lease_token: string | null;
  result_token: string | null;
  agent_id: string | null;
  lease_expires_at: number | string | null;
  available_at: number | string;
  leases: number | string;
  result: string | null;
  error: string | null;
  output_records: number | string;
  created_at: number | string;
  started_at: number | string | null;
  finished_at: number | string | null;
  /** When the job ends `expired` if still queued (null for rows from before the column existed). */
  expires_at?: number | string | null;
  output_bytes?: number | string;
  /** When the current (or last) lease began (null for rows from before the column existed). */
  leased_at?: number | string | null;
}

/** Number of a BIGINT column, whichever driver produced it. */
export function num(v: number | string | null | undefined): number {
  return v === null || v === undefined ? 0 : Number(v);
}

function iso(v: number | string | null | undefined): string | null {
  return v === null || v === undefined ? null : new Date(Number(v)).toISOString();
}

function parseJson(text: string | null | undefined): unknown {
  return text === null || text === undefined ? null : JSON.parse(text);
}

/** The wire view of a job (DESIGN "Job side"). */
export function toJobView(r: JobRow): JobView {
  return {
    id: r.id,
    pool: r.pool,
    type: r.type,
    resource: r.resource,
    status: r.status,
    attempt: num(r.attempt),
    maxAttempts: num(r.max_attempts),
    agentId: r.agent_id,
    result: parseJson(r.result),
    error: parseJson(r.error) as JobError | null,
    outputRecords: num(r.output_records),
    createdAt: iso(r.created_at),
    startedAt: iso(r.started_at),
    finishedAt: iso(r.finished_at),
    expiresAt: iso(r.expires_at ?? null),
  };
}

let counter = 0;
/** Random bytes drawn 4 KiB at a time: one syscall per 512 ids instead of one each. */
let pool = Buffer.alloc(0);
let poolOffset = 0;

/** `bytes` random bytes as hex, from the pool; each byte is handed out once. */
function randomHex(bytes: number): string {
  if (poolOffset + bytes > pool.length) {
    pool = randomBytes(4096);
    poolOffset = 0;
  }
  const hex = pool.toString('hex', poolOffset, poolOffset + bytes);
  // Spent bytes are zeroed so that no later reader of the buffer sees a lease secret.
  pool.fill(0, poolOffset, poolOffset + bytes);
  poolOffset += bytes;
  return hex;
}

/**
 * A job id that sorts by creation: base-36 milliseconds, a per-process
 * counter (keeps a batch in order within one millisecond) and 64 random bits.
 */
export function newJobId(nowMs: number): string {
  counter = (counter + 1) % 1_679_616;
  return `${nowMs.toString(36).padStart(9, '0')}${counter.toString(36).padStart(4, '0')}${randomHex(8)}`;
}

/** 128 random bits, hex: the per-lease part of a lease token (drawn from the pool: no syscall per claim). */
export function newLeaseSecret(): string {
  return randomHex(16);
}
