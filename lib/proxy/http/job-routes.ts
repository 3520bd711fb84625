import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { OutpostError } from '../../util/errors.js';
import {
  BatchEnqueueRequest,
  EnqueueRequest,
  Id,
  TERMINAL_STATUSES,
  type JobStatus,
  type JobView,
} from '../../protocol/schemas.js';
import type { Principal } from '../store/tokens.js';
import type { NewJob } from '../store/jobs.js';
import { canSee } from './auth.js';
import type { RouteDeps, RouteOptions } from './context.js';

const JobParams = Type.Object({ id: Id });
const STATUSES: readonly string[] = ['queued', 'leased', 'succeeded', 'failed', 'cancelled'];
/** How often a waiting `GET /v1/jobs/{id}` re-reads the row, to see changes made by another replica. */
const JOB_REREAD_MS = 1000;

/** A non-negative integer query parameter; 400 naming it otherwise. */
function intParam(value: unknown, name: string, max: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string' || !/^\d{1,9}$/.test(value)) throw new OutpostError('invalid_request', `querystring.${name}: must be a non-negative integer`);
  return Math.min(Number(value), max);
}

/** The job side of wire protocol v1 (DESIGN "Job side"). */
export function registerJobRoutes(app: FastifyInstance, opts: RouteOptions, deps: RouteDeps): void {
  const { auth, jobs, tokens } = deps;

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

  app.post<{ Body: EnqueueRequest }>('/v1/jobs', { schema: { body: EnqueueRequest } }, async (req, reply) => {
    const p = await auth.admin(req);
    const [out] = await jobs.enqueue([await poolFor(p, req.body, null)]);
    return reply.code(201).send(out);
  });

  app.post<{ Body: BatchEnqueueRequest }>('/v1/jobs/batch', { schema: { body: BatchEnqueueRequest } }, async (req, reply) => {
    const p = await auth.admin(req);
    const items: NewJob[] = [];
    const checked = new Map<string, NewJob>();
    for (const [i, item] of req.body.jobs.entries()) {
      // Pool existence is checked once per pool, not once per job.
      const known = item.pool !== undefined ? checked.get(item.pool) : undefined;
      const job = known ? { ...item, pool: known.pool } : await poolFor(p, item, i);
      checked.set(job.pool, job);
      items.push(job);
    }
    return reply.code(201).send({ jobs: await jobs.enqueue(items) });
  });

  app.get<{ Params: { id: string }; Querystring: Record<string, string> }>('/v1/jobs/:id', { schema: { params: JobParams } }, async (req) => {
    const p = await auth.admin(req);
    const waitMs = intParam(req.query.waitMs, 'waitMs', opts.maxWaitMs);
    let job = await visibleJob(p, req.params.id);
    if (!waitMs) return job;
    const deadline = deps.clock.now() + waitMs;
    while (!TERMINAL_STATUSES.includes(job.status) && deps.state() === 'running') {
      const remainingMs = deadline - deps.clock.now();
      if (remainingMs <= 0) break;
      await deps.watch.wait(job.id, Math.min(remainingMs, JOB_REREAD_MS));
      job = await visibleJob(p, job.id);
    }
    return job;
  });

  app.get<{ Params: { id: string } }>('/v1/jobs/:id/output', { schema: { params: JobParams } }, async (req, reply) => {
    const p = await auth.admin(req);
    await visibleJob(p, req.params.id);
    const row = await jobs.row(req.params.id);
    const token = row?.lease_token;
    const output = deps.output;
    async function* lines(): AsyncGenerator<string> {
      if (!token) return;
      for await (const page of output.records(req.params.id, token)) {
        yield page.map((r) => JSON.stringify(r) + '\n').join('');
      }
    }
    return reply.type('application/x-ndjson').send(Readable.from(lines()));
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/jobs', async (req) => {
    const p = await auth.admin(req);
    const { pool, status } = req.query;
    if (status !== undefined && !STATUSES.includes(status)) throw new OutpostError('invalid_request', `querystring.status: must be one of ${STATUSES.join(', ')}`);
    if (pool !== undefined && !canSee(p, pool)) throw new OutpostError('forbidden', 'querystring.pool: not this token’s pool');
    const limit = intParam(req.query.limit, 'limit', 1000) ?? 100;
    const pools = pool !== undefined ? [pool] : p.pool !== null ? [p.pool] : null;
    return { jobs: await jobs.list(pools, status as JobStatus | undefined, limit) };
  });

  app.post<{ Params: { id: string } }>('/v1/jobs/:id/cancel', { schema: { params: JobParams } }, async (req) => {
    const p = await auth.admin(req);
    await visibleJob(p, req.params.id);
    const job = await jobs.cancel(req.params.id);
    if (!job) throw new OutpostError('not_found', 'no such job');
    return job;
  });

  app.get<{ Querystring: Record<string, string> }>('/v1/agents', async (req) => {
    const p = await auth.admin(req);
    const { pool } = req.query;
    if (pool !== undefined && !canSee(p, pool)) throw new OutpostError('forbidden', 'querystring.pool: not this token’s pool');
    const pools = pool !== undefined ? [pool] : p.pool !== null ? [p.pool] : null;
    return deps.agents.list(pools);
  });
}
