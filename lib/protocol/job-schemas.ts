import { Type, type Static } from '@sinclair/typebox';
import { AgentId, Id, JobError, JobType, PoolName, ResourceName, Strict } from './wire-base.js';

/**
 * The job side and the admin side of wire protocol v1: enqueue, job and
 * agent views, pool keys. Re-exported by schemas.ts, which callers import.
 */

// ---- job side ------------------------------------------------------------

export const JobStatus = Type.Union([
  Type.Literal('queued'),
  Type.Literal('leased'),
  Type.Literal('succeeded'),
  Type.Literal('failed'),
  Type.Literal('cancelled'),
]);
export type JobStatus = Static<typeof JobStatus>;
export const TERMINAL_STATUSES: readonly JobStatus[] = ['succeeded', 'failed', 'cancelled'];
/** Longest `queueTimeoutMs`, and farthest `expiresAt` from now: 30 days. */
export const MAX_QUEUE_TIMEOUT_MS = 30 * 86_400_000;

export const EnqueueRequest = Type.Object(
  {
    pool: Type.Optional(PoolName),
    type: JobType,
    resource: Type.Optional(Type.Union([ResourceName, Type.Null()])),
    payload: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    maxAttempts: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 24 * 3600_000 })),
    idempotencyKey: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })),
    /** A job still queued at this time ends `failed` with code `expired` (ISO 8601, at most 30 days ahead). */
    expiresAt: Type.Optional(Type.String({ format: 'date-time', maxLength: 64 })),
    /** As `expiresAt`, counted from enqueue. Default: the proxy's `queueTimeoutMs` (24 h). */
    queueTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_QUEUE_TIMEOUT_MS })),
  },
  Strict,
);
export type EnqueueRequest = Static<typeof EnqueueRequest>;

/** `warnings`: things that let the job wait forever, e.g. `no agent of pool P serves resource R`. */
export const EnqueueResponse = Type.Object({ id: Id, status: JobStatus, warnings: Type.Optional(Type.Array(Type.String())) });
export type EnqueueResponse = Static<typeof EnqueueResponse>;

export const BatchEnqueueRequest = Type.Object(
  { jobs: Type.Array(EnqueueRequest, { minItems: 1, maxItems: 1000 }) },
  Strict,
);
export type BatchEnqueueRequest = Static<typeof BatchEnqueueRequest>;

export const BatchEnqueueResponse = Type.Object({ jobs: Type.Array(EnqueueResponse) });
export type BatchEnqueueResponse = Static<typeof BatchEnqueueResponse>;

const Timestamp = Type.Union([Type.String({ format: 'date-time' }), Type.Null()]);

/** One lease of a job: who ran it, when, and how it ended (`running` while leased). */
export const JobAttempt = Type.Object(
  {
    attempt: Type.Integer({ minimum: 1 }),
    agentId: Type.String(),
    startedAt: Timestamp,
    endedAt: Timestamp,
    outcome: Type.Union([
      Type.Literal('running'),
      Type.Literal('succeeded'),
      Type.Literal('failed'),
      Type.Literal('expired'),
      Type.Literal('released'),
      Type.Literal('cancelled'),
      Type.Literal('unknown'),
    ]),
    error: Type.Union([JobError, Type.Null()]),
  },
);
export type JobAttempt = Static<typeof JobAttempt>;

export const JobView = Type.Object({
  id: Id,
  pool: PoolName,
  type: JobType,
  resource: Type.Union([Type.String(), Type.Null()]),
  status: JobStatus,
  attempt: Type.Integer({ minimum: 0 }),
  maxAttempts: Type.Integer({ minimum: 1 }),
  agentId: Type.Union([Type.String(), Type.Null()]),
  result: Type.Unknown(),
  error: Type.Union([JobError, Type.Null()]),
  outputRecords: Type.Integer({ minimum: 0 }),
  createdAt: Timestamp,
  startedAt: Timestamp,
  finishedAt: Timestamp,
  expiresAt: Type.Optional(Timestamp),
  /** Each lease of the job, oldest first: only in `GET /v1/jobs/{id}`. */
  attempts: Type.Optional(Type.Array(JobAttempt, { maxItems: 100 })),
});
export type JobView = Static<typeof JobView>;

/** A page cursor: opaque, pass it back as `?cursor=`; null on the last page. */
export const NextCursor = Type.Union([Type.String(), Type.Null()]);

export const JobList = Type.Object({ jobs: Type.Array(JobView), nextCursor: Type.Optional(NextCursor) });
export type JobList = Static<typeof JobList>;

export const AgentView = Type.Object({
  agentId: AgentId,
  pool: PoolName,
  hostname: Type.String(),
  version: Type.String(),
  resources: Type.Array(Type.String()),
  /**
   * online; draining (said goodbye, finishing its jobs); stale (not heard from
   * for its poll hold + 5 s); offline (said so, or unseen for the presence window).
   */
  status: Type.Union([Type.Literal('online'), Type.Literal('draining'), Type.Literal('stale'), Type.Literal('offline')]),
  lastSeenAt: Timestamp,
  inFlight: Type.Integer({ minimum: 0 }),
  /** Ids of the jobs it holds leases on (at most 100). */
  inFlightJobs: Type.Optional(Type.Array(Id)),
  /** Older than the proxy's `agents.latestVersion`, below `agents.minVersion`, or not a version at all. */
  outdated: Type.Optional(Type.Boolean()),
  /** Below `agents.minVersion` or unparseable: its polls get 426 upgrade_required. */
  upgradeRequired: Type.Optional(Type.Boolean()),
});
export type AgentView = Static<typeof AgentView>;

/** `GET /v1/agents` without `limit`/`cursor` answers a bare array (DESIGN; its first page only, deprecated). */
export const AgentList = Type.Array(AgentView);
export type AgentList = Static<typeof AgentList>;

/** `GET /v1/agents?limit=&cursor=`: one page. */
export const AgentPage = Type.Object({ agents: Type.Array(AgentView), nextCursor: NextCursor });
export type AgentPage = Static<typeof AgentPage>;

/** The sealed-box algorithm of pool keys (libsodium crypto_box_seal). */
export const SEALED_BOX_ALGORITHM = 'x25519-xsalsa20-poly1305-sealedbox';
/** A pool's X25519 public key: 32 bytes in standard base64 (`bin/agent keygen` prints it). */
export const PublicKey = Type.String({ minLength: 44, maxLength: 44, pattern: '^[A-Za-z0-9+/]{43}=$' });
/** `PUT /v1/pools/{pool}/key` (admin token of the pool, or the configured admin token). */
export const PoolKeyRequest = Type.Object({ publicKey: PublicKey }, { additionalProperties: false });
/** `GET /v1/pools/{pool}/key` (admin or viewer token): what the job side seals secret fields with. */
export const PoolKeyView = Type.Object({
  pool: PoolName,
  publicKey: PublicKey,
  algorithm: Type.Literal(SEALED_BOX_ALGORITHM),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type PoolKeyRequest = Static<typeof PoolKeyRequest>;
export type PoolKeyView = Static<typeof PoolKeyView>;
