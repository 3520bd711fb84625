import type { LeasedJob } from '../protocol/schemas.js';

/**
 * The write operations, and which payload fields name the account and the
 * entitlement they touch. Only these fields reach the audit line: never a
 * password, attribute values or any other part of the payload.
 */
const WRITE_TYPES: Readonly<Record<string, { account?: string; entitlement?: string }>> = Object.freeze({
  grant: { account: 'accountId', entitlement: 'entitlementId' },
  revoke: { account: 'accountId', entitlement: 'entitlementId' },
  setAccountEnabled: { account: 'accountId' },
  createAccount: {},
  updateAccount: { account: 'accountId' },
  deleteAccount: { account: 'accountId' },
  setPassword: { account: 'accountId' },
});

/** Whether `type` changes the target system (and so gets an audit line). */
export function isWriteType(type: string): boolean {
  return Object.prototype.hasOwnProperty.call(WRITE_TYPES, type);
}

/** How a write ended, for its audit line. */
export interface AuditOutcome {
  outcome: 'succeeded' | 'failed' | 'stopped';
  durationMs: number;
  /** The job's result when it succeeded (`changed`, and `accountId` of createAccount). */
  result?: unknown;
  /** The wire error code when it failed. */
  code?: string;
  /** lost | cancelled | fenced | shutdown when the lease ended first: the write may or may not have happened. */
  stopReason?: string;
}

/**
 * The fields of the one `audit` line of a write job (logged at info by the
 * runner): jobId, type, resource, account, entitlement, changed, durationMs,
 * outcome, and the error code on failure.
 */
export function auditFields(job: LeasedJob, end: AuditOutcome): Record<string, unknown> {
  const spec = WRITE_TYPES[job.type] ?? {};
  const payload = (job.payload ?? {}) as Record<string, unknown>;
  const result = (end.result ?? {}) as Record<string, unknown>;
  let account = spec.account ? payload[spec.account] : undefined;
  // createAccount names the account it made in its result; before that, by the requested name.
  if (job.type === 'createAccount') account = result.accountId ?? (payload.account as { name?: unknown } | undefined)?.name;
  return {
    jobId: job.id,
    type: job.type,
    resource: job.resource,
    attempt: job.attempt,
    account: typeof account === 'string' ? account : null,
    entitlement: spec.entitlement && typeof payload[spec.entitlement] === 'string' ? payload[spec.entitlement] : null,
    changed: typeof result.changed === 'boolean' ? result.changed : null,
    durationMs: Math.round(end.durationMs),
    outcome: end.outcome,
    ...(end.code ? { code: end.code } : {}),
    ...(end.stopReason ? { stopReason: end.stopReason } : {}),
  };
}
