import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { AgentId, ErrorBody, Id, JobError, JobType, LeaseToken, ResourceName, Strict } from './wire-base.js';
import {
  AgentList, AgentPage, AgentView, BatchEnqueueRequest, BatchEnqueueResponse, EnqueueRequest, EnqueueResponse, JobAttempt, JobList, JobView,
  PoolKeyRequest, PoolKeyView,
} from './job-schemas.js';

export * from './wire-base.js';
export * from './job-schemas.js';

/**
 * Every request and response body of wire protocol v1 (DESIGN "Wire protocol
 * v1"), one TypeBox schema each: TypeScript types (Static), runtime
 * validation and the OpenAPI document come from these. This file holds the
 * agent side; the building blocks are in wire-base.ts, the job and admin
 * side in job-schemas.ts, both re-exported here.
 * Request objects reject unknown fields.
 */

// ---- agent side ----------------------------------------------------------

export const LeaseRef = Type.Object({ jobId: Id, leaseToken: LeaseToken }, Strict);
export type LeaseRef = Static<typeof LeaseRef>;

export const SucceededResult = Type.Object(
  { jobId: Id, leaseToken: LeaseToken, outcome: Type.Literal('succeeded'), result: Type.Unknown() },
  Strict,
);
export const FailedResult = Type.Object(
  { jobId: Id, leaseToken: LeaseToken, outcome: Type.Literal('failed'), error: JobError },
  Strict,
);
export const ResultItem = Type.Union([SucceededResult, FailedResult]);
export type ResultItem = Static<typeof ResultItem>;

export const LeaseStatus = Type.Union([Type.Literal('ok'), Type.Literal('lost'), Type.Literal('cancelled')]);
export type LeaseStatus = Static<typeof LeaseStatus>;

/** One lease's answer to a renewal (heartbeat, or `leases` carried on a poll): `ok` with the new TTL, `lost` or `cancelled`. */
export const RenewalStatus = Type.Object({ jobId: Id, status: LeaseStatus, leaseTtlMs: Type.Optional(Type.Integer({ minimum: 1 })) });
export type RenewalStatus = Static<typeof RenewalStatus>;

/** One result's answer: `accepted` (recorded now, or already by this token), or `lost` (stale token: changed nothing). */
export const ResultStatus = Type.Object({ jobId: Id, status: Type.Union([Type.Literal('accepted'), Type.Literal('lost')]) });
export type ResultStatus = Static<typeof ResultStatus>;

/** What a proxy takes on a lease request besides the poll (LeaseResponse `carries`). */
export const CARRIED_FIELDS = ['results', 'leases'] as const;

export const LeaseRequest = Type.Object(
  {
    agentId: AgentId,
    hostname: Type.String({ maxLength: 255 }),
    version: Type.String({ maxLength: 64 }),
    resources: Type.Array(ResourceName, { maxItems: 256 }),
    max: Type.Integer({ minimum: 1, maximum: 1000 }),
    waitMs: Type.Integer({ minimum: 0, maximum: 600_000 }),
    /**
     * Results carried on this poll (as `POST /v1/agent/results`), recorded before
     * the claim; their statuses come back in the answer's `results`. Send only to
     * a proxy whose lease answers list `results` in `carries`: an older one
     * refuses the field (400).
     */
    results: Type.Optional(
      Type.Array(ResultItem, {
        maxItems: 1000,
        description: 'results carried on this poll, as in POST /v1/agent/results; only to a proxy that lists "results" in carries. A poll that carries anything is answered without a hold',
      }),
    ),
    /** Leases renewed by this poll (as `POST /v1/agent/heartbeat`); statuses in the answer's `leases`. Same rule as `results`. */
    leases: Type.Optional(
      Type.Array(LeaseRef, {
        maxItems: 1000,
        description: 'leases renewed by this poll, as in POST /v1/agent/heartbeat; only to a proxy that lists "leases" in carries',
      }),
    ),
  },
  Strict,
);
export type LeaseRequest = Static<typeof LeaseRequest>;

export const LeasedJob = Type.Object({
  id: Id,
  type: JobType,
  resource: Type.Union([ResourceName, Type.Null()]),
  payload: Type.Unknown(),
  attempt: Type.Integer({ minimum: 1 }),
  leaseToken: LeaseToken,
  leaseTtlMs: Type.Integer({ minimum: 1 }),
  timeoutMs: Type.Integer({ minimum: 1 }),
});
export type LeasedJob = Static<typeof LeasedJob>;

export const LeaseResponse = Type.Object({
  jobs: Type.Array(LeasedJob),
  /**
   * How long the proxy held this poll before it claimed the jobs (ms, from the
   * request's arrival). The agent counts each lease's TTL from its send time +
   * heldMs, so a process frozen after the claim cannot outlive the proxy's
   * expiry. Optional: absent from older proxies (the agent then counts from
   * when it read the answer) and from empty answers.
   */
  heldMs: Type.Optional(
    Type.Integer({ minimum: 0, description: 'ms the proxy held the poll before it claimed these jobs; the agent fences at send time + heldMs + leaseTtlMs − margin' }),
  ),
  /** The newest agent version the operator deploys (proxy config `agents.latestVersion`); absent when not configured. */
  latestVersion: Type.Optional(Type.String({ maxLength: 64, description: 'newest agent version (agents.latestVersion); an older agent logs a warning once an hour' })),
  /** Agents older than this get 426 upgrade_required (proxy config `agents.minVersion`); absent when not configured. */
  minVersion: Type.Optional(Type.String({ maxLength: 64, description: 'oldest agent version served (agents.minVersion); older or unparseable versions get 426 upgrade_required' })),
  /**
   * The request fields this proxy takes on a lease request besides the poll
   * (`results`, `leases`). Absent from older proxies: an agent carries nothing
   * until an answer lists the field, and falls back to the separate routes.
   */
  carries: Type.Optional(
    Type.Array(Type.Union(CARRIED_FIELDS.map((f) => Type.Literal(f))), {
      maxItems: 16,
      description: 'request fields this proxy accepts on a lease request (results, leases); absent from older proxies',
    }),
  ),
  /** Statuses of the carried `results`, one per item, as `POST /v1/agent/results` answers. */
  results: Type.Optional(Type.Array(ResultStatus, { description: 'statuses of the carried results, one per item' })),
  /** Statuses of the carried `leases`, one per item, as `POST /v1/agent/heartbeat` answers. */
  leases: Type.Optional(Type.Array(RenewalStatus, { description: 'statuses of the carried lease renewals, one per item' })),
});
export type LeaseResponse = Static<typeof LeaseResponse>;

/**
 * `POST /v1/agent/goodbye`: an agent says it is stopping (`draining`: takes no
 * new leases, finishes what it runs) or gone (`offline`: exited). Shown at once
 * in `GET /v1/agents`; a later poll of the same agentId makes it online again.
 */
export const GoodbyeRequest = Type.Object(
  { agentId: AgentId, status: Type.Union([Type.Literal('draining'), Type.Literal('offline')]) },
  Strict,
);
export type GoodbyeRequest = Static<typeof GoodbyeRequest>;

export const GoodbyeResponse = Type.Object({ status: Type.Union([Type.Literal('draining'), Type.Literal('offline')]) });
export type GoodbyeResponse = Static<typeof GoodbyeResponse>;

export const HeartbeatRequest = Type.Object(
  { agentId: AgentId, leases: Type.Array(LeaseRef, { maxItems: 1000 }) },
  Strict,
);
export type HeartbeatRequest = Static<typeof HeartbeatRequest>;

export const HeartbeatResponse = Type.Object({ leases: Type.Array(RenewalStatus) });
export type HeartbeatResponse = Static<typeof HeartbeatResponse>;

export const OutputRequest = Type.Object(
  {
    leaseToken: LeaseToken,
    seq: Type.Integer({ minimum: 0 }),
    records: Type.Array(Type.Unknown(), { maxItems: 10_000 }),
  },
  Strict,
);
export type OutputRequest = Static<typeof OutputRequest>;

export const OutputResponse = Type.Object({ status: Type.Union([Type.Literal('accepted'), Type.Literal('duplicate')]) });
export type OutputResponse = Static<typeof OutputResponse>;

/** Media type of an output page in its NDJSON form (`POST /v1/agent/jobs/{id}/output`). */
export const NDJSON_MEDIA_TYPE = 'application/x-ndjson';

/**
 * The first line of an output page in its NDJSON form: the lease that wrote
 * it and its place; one record a line follows (at most 10 000). The proxy
 * stores the record lines as sent, never parsing them into objects.
 */
export const OutputPageHead = Type.Object({ leaseToken: LeaseToken, seq: Type.Integer({ minimum: 0 }) }, Strict);
export type OutputPageHead = Static<typeof OutputPageHead>;

export const ResultsRequest = Type.Object(
  { agentId: AgentId, results: Type.Array(ResultItem, { minItems: 1, maxItems: 1000 }) },
  Strict,
);
export type ResultsRequest = Static<typeof ResultsRequest>;

export const ResultsResponse = Type.Object({ results: Type.Array(ResultStatus) });
export type ResultsResponse = Static<typeof ResultsResponse>;

export const ReleaseRequest = Type.Object(
  { agentId: AgentId, leases: Type.Array(LeaseRef, { maxItems: 1000 }) },
  Strict,
);
export type ReleaseRequest = Static<typeof ReleaseRequest>;

export const ReleaseResponse = Type.Object({
  leases: Type.Array(Type.Object({ jobId: Id, status: Type.Union([Type.Literal('released'), Type.Literal('lost')]) })),
});
export type ReleaseResponse = Static<typeof ReleaseResponse>;

/** Every named schema, for the OpenAPI document. */
export const ALL_SCHEMAS: Record<string, TSchema> = {
  ErrorBody, JobError, LeaseRequest, LeasedJob, LeaseResponse, LeaseRef, HeartbeatRequest, HeartbeatResponse,
  RenewalStatus, ResultStatus, OutputRequest, OutputResponse, OutputPageHead, ResultItem, ResultsRequest, ResultsResponse, ReleaseRequest, ReleaseResponse,
  EnqueueRequest, EnqueueResponse, BatchEnqueueRequest, BatchEnqueueResponse, JobView, JobList, AgentView, AgentList,
  AgentPage, GoodbyeRequest, GoodbyeResponse, JobAttempt, PoolKeyRequest, PoolKeyView,
};
