import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { OutpostError } from '../../util/errors.js';
import {
  BatchEnqueueRequest,
  BatchEnqueueResponse,
  EnqueueRequest,
  EnqueueResponse,
  Id,
  JobList,
  JobView as JobViewSchema,
  MAX_QUEUE_TIMEOUT_MS,
  TERMINAL_STATUSES,
  type JobView,
} from '../../protocol/schemas.js';
import { ERROR_RESPONSES, NOT_FOUND, ref } from '../../protocol/openapi.js';
import { assertEnqueueable, payloadSchemaOf } from '../../protocol/operations.js';
import type { Principal } from '../store/tokens.js';
import type { NewJob } from '../store/jobs.js';
import { listAttempts } from '../store/attempts.js';
import { canSee } from './auth.js';
import type { JobRouteDeps, RouteOptions } from './context.js';
import { AgentListQuery, JobListQuery, JobQuery, countParam } from './query.js';

const JobParams = Type.Object({ id: Id });
/** How often a waiting `GET /v1/jobs/{id}` re-reads the row, to see changes made by another replica. */
const JOB_REREAD_MS = 1000;

/**
 * `GET /v1/agents`: one page with limit or cursor, else the bare array of
 * DESIGN. Documented, not given to the serializer: fast-json-stringify picks a
 * union's branch by validating the whole answer (a 1 000-agent page: 4.7 ms
 * instead of JSON.stringify's 2.2 ms, measured in the issue-14 note).
 */
const AGENTS_ANSWER = { '200': { description: 'OK', content: { 'application/json': { schema: { oneOf: [ref('AgentPage'), ref('AgentList')] } } } } };

/** Largest page of `GET /v1/jobs` and `GET /v1/agents`. */
const MAX_PAGE = 1000;

/**
 * Checks what the protocol schema cannot: a known type with a matching
 * payload and resource (PAYLOAD_SCHEMAS), and an `expiresAt` within 30 days.
 */
function checkItem(item: EnqueueRequest, where: string, nowMs: number, opts: RouteOptions): void {
  if (!opts.acceptUnknownTypes || payloadSchemaOf(item.type)) assertEnqueueable(item, where);
  if (item.expiresAt !== undefined) {
    const at = Date.parse(item.expiresAt);
    if (!Number.isFinite(at)) throw new OutpostError('invalid_request', `${where}.expiresAt: must be an ISO 8601 date-time`);
    if (at - nowMs > MAX_QUEUE_TIMEOUT_MS) throw new OutpostError('invalid_request', `${where}.expiresAt: at most 30 days ahead`);
    if (item.queueTimeoutMs !== undefined) throw new OutpostError('invalid_request', `${where}.queueTimeoutMs: give expiresAt or queueTimeoutMs, not both`);
  }
}

/** The job side of wire protocol v1 (DESIGN "Job side"). */
export function registerJobRoutes(app: FastifyInstance, opts: RouteOptions, deps: JobRouteDeps): void {
  const { auth, jobs, tokens } = deps;

  /**
   * `no agent of pool P serves resource R` for each distinct (pool, resource)
   * of the new jobs that no agent offered within the presence window: a typo
   * in a resource name shows at once instead of as a job queued forever.
   */
  async function warningsFor(items: readonly NewJob[]): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const j of items) {
      if (j.resource === undefined || j.resource === null) continue;
      const key = `${j.pool}\u0000${j.resource}`;
      if (out.has(key)) continue;
      out.set(key, (await deps.agents.serves(j.pool, j.resource)) ? '' : `no agent of pool ${j.pool} serves resource ${j.resource}`);
    }
    return out;
  }

  function withWarnings<T extends object>(answer: T, job: NewJob, warnings: Map<string, string>): T & { warnings?: string[] } {
    const w = job.resource ? warnings.get(`${job.pool}\u0000${job.resource}`) : '';
    return w ? { ...answer, warnings: [w] } : answer;
  }

  /** The pool a new job goes to: the token's own, or the one named (configured admin token). */
  async function poolFor(p: Principal, item: EnqueueRequest, index: number | null): Promise<NewJob> {
    const where = index === null ? 'body.pool' : `body.jobs.${index}.pool`;
    if (p.pool !== null) {
      if (item.pool !== undefined && item.pool !== p.pool) throw new OutpostError('forbidden', `${where}: this token enqueues only to its own pool`);
      return { ...item, pool: p.pool };
    }
    if (item.pool === undefined) throw new OutpostError('invalid_request', `${where}: is required with the configured admin token`);
    if (!(await tokens.poolExists(item.pool))) throw new OutpostError('not_found', `${where}: no such pool`);
    return { ...item, pool: item.pool };
  }

  /** A job the principal may see; 404 otherwise (another pool's job is not revealed). */
  async function visibleJob(p: Principal, id: string): Promise<JobView> {
    const job = await jobs.get(id);
    if (!job || !canSee(p, job.pool)) throw new OutpostError('not_found', 'no such job');
    return job;
  }

  app.post<{ Body: EnqueueRequest }>('/v1/jobs', {
    schema: { body: EnqueueRequest, response: { 201: EnqueueResponse } },
    config: { doc: { summary: 'Enqueue a job (admin token); 400 names the field of an unknown type or a payload that does not match; warnings when no agent serves the resource', responses: { ...ERROR_RESPONSES, ...NOT_FOUND } } },
  }, async (req, reply) => {
    const p = await auth.admin(req);
    checkItem(req.body, 'body', deps.clock.now(), opts);
    const job = await poolFor(p, req.body, null);
    const [out] = await jobs.enqueue([job]);
    if (out === undefined) throw new OutpostError('internal', 'the store answered no job for the one enqueued');
    return reply.code(201).send(withWarnings(out, job, await warningsFor([job])));
  });

  app.post<{ Body: BatchEnqueueRequest }>('/v1/jobs/batch', {
    schema: { body: BatchEnqueueRequest, response: { 201: BatchEnqueueResponse } },
    config: { doc: { summary: 'Enqueue up to 1 000 jobs in one transaction (admin token)', responses: { ...ERROR_RESPONSES, ...NOT_FOUND } } },
  }, async (req, reply) => {
    const p = await auth.admin(req);
    const items: NewJob[] = [];
    const checked = new Map<string, NewJob>();
    const nowMs = deps.clock.now();
    for (const [i, item] of req.body.jobs.entries()) {
      checkItem(item, `body.jobs.${i}`, nowMs, opts);
      // Pool existence is checked once per pool, not once per job.
      const known = item.pool !== undefined ? checked.get(item.pool) : undefined;
      const job = known ? { ...item, pool: known.pool } : await poolFor(p, item, i);
      checked.set(job.pool, job);
      items.push(job);
    }
    const made = await jobs.enqueue(items);
    const warnings = await warningsFor(items);
    // The store answers one job per item, in order.
    return reply.code(201).send({ jobs: made.map((m, i) => (items[i] ? withWarnings(m, items[i], warnings) : m)) });
  });

  app.get<{ Params: { id: string }; Querystring: JobQuery }>('/v1/jobs/:id', {
    schema: { params: JobParams, querystring: JobQuery, response: { 200: JobViewSchema } },
    config: { doc: { summary: 'A job; with waitMs, answers when it is terminal or after waitMs', responses: { ...ERROR_RESPONSES, ...NOT_FOUND } } },
  }, async (req) => {
    const p = await auth.admin(req);
    const waitMs = countParam(req.query.waitMs, opts.maxWaitMs);
    let job = await visibleJob(p, req.params.id);
    if (!waitMs) return withAttempts(job);
    const deadline = deps.clock.now() + waitMs;
    while (!TERMINAL_STATUSES.includes(job.status) && deps.state() === 'running') {
      const remainingMs = deadline - deps.clock.now();
      if (remainingMs <= 0) break;
      await deps.watch.wait(job.id, Math.min(remainingMs, JOB_REREAD_MS));
      job = await visibleJob(p, job.id);
    }
    return withAttempts(job);
  });

  /** The job with each of its leases (agent, start, end, outcome): `GET /v1/jobs/{id}` only, not listings. */
  async function withAttempts(job: JobView): Promise<JobView> {
    const row = await jobs.row(job.id);
    return { ...job, attempts: await listAttempts(deps.db, job, row) };
  }

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/output', {
    schema: { params: JobParams },
    config: { doc: { summary: 'Output records as NDJSON, in order', responses: {
      '200': { description: 'One JSON record per line', content: { 'application/x-ndjson': { schema: { type: 'string' } } } }, ...ERROR_RESPONSES, ...NOT_FOUND,
    } } },
  }, async (req, reply) => {
    const p = await auth.admin(req);
    await visibleJob(p, req.params.id);
    const row = await jobs.row(req.params.id);
    const token = row?.lease_token;
    const output = deps.output;
    async function* lines(): AsyncGenerator<string | Buffer> {
      // Pages are stored as NDJSON (bytes on SQLite, text on PostgreSQL): served as they are, never parsed here.
      if (token) yield* output.ndjson(req.params.id, token);
    }
    return reply.type('application/x-ndjson').send(Readable.from(lines()));
  });

  app.get<{ Querystring: JobListQuery }>('/v1/jobs', {
    schema: { querystring: JobListQuery, response: { 200: JobList } },
    config: { doc: { summary: 'One page of jobs, newest first (admin token): pass nextCursor back as cursor; null on the last page', responses: ERROR_RESPONSES } },
  }, async (req) => {
    const p = await auth.admin(req);
    const { pool, status } = req.query;
    if (pool !== undefined && !canSee(p, pool)) throw new OutpostError('forbidden', 'querystring.pool: not this token’s pool');
    const limit = Math.max(1, countParam(req.query.limit, MAX_PAGE) ?? 100);
    const pools = pool !== undefined ? [pool] : p.pool !== null ? [p.pool] : null;
    const cursor = req.query.cursor || undefined;
    return jobs.list(pools, status, limit, cursor);
  });

  app.post<{ Params: { id: string } }>('/v1/jobs/:id/cancel', {
    schema: { params: JobParams, response: { 200: JobViewSchema } },
    config: { doc: { summary: 'Cancel a queued or leased job', responses: { ...ERROR_RESPONSES, ...NOT_FOUND } } },
  }, async (req) => {
    const p = await auth.admin(req);
    await visibleJob(p, req.params.id);
    const job = await jobs.cancel(req.params.id);
    if (!job) throw new OutpostError('not_found', 'no such job');
    return job;
  });

  app.get<{ Querystring: AgentListQuery }>('/v1/agents', {
    schema: { querystring: AgentListQuery },
    config: { doc: {
      summary: 'Agents of a pool: with limit or cursor one page {agents, nextCursor}; without, a bare array of the first 1 000 (deprecated; X-Next-Cursor names the rest)',
      responses: { ...AGENTS_ANSWER, ...ERROR_RESPONSES },
    } },
  }, async (req, reply) => {
    const p = await auth.admin(req);
    const { pool } = req.query;
    if (pool !== undefined && !canSee(p, pool)) throw new OutpostError('forbidden', 'querystring.pool: not this token’s pool');
    const pools = pool !== undefined ? [pool] : p.pool !== null ? [p.pool] : null;
    const paged = req.query.limit !== undefined || req.query.cursor !== undefined;
    const limit = Math.max(1, countParam(req.query.limit, MAX_PAGE) ?? MAX_PAGE);
    const page = await deps.agents.list(pools, limit, req.query.cursor || undefined);
    if (paged) return page;
    // The bare array of DESIGN (the dashboard reads it): its first page only; the cursor of the rest in a header.
    if (page.nextCursor) reply.header('x-next-cursor', page.nextCursor);
    return page.agents;
  });
}
