import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { OutpostError } from '../../util/errors.js';
import {
  GoodbyeRequest,
  GoodbyeResponse,
  HeartbeatRequest,
  HeartbeatResponse,
  LeaseRequest,
  LeaseResponse,
  ReleaseRequest,
  ReleaseResponse,
  ResultsRequest,
  ResultsResponse,
  CARRIED_FIELDS,
  type LeaseRef,
} from '../../protocol/schemas.js';
import { versionStanding } from '../../protocol/semver.js';
import { ERROR_RESPONSES } from '../../protocol/openapi.js';
import type { AgentRouteDeps, RouteOptions } from './context.js';

/** An agent refused with 426 retries after this (Retry-After), and is expected again by then (presence). */
const UPGRADE_RETRY_MS = 300_000;

/** An agent-chosen value for a log line; never the caller's own token (an agent configured with its token as its id). */
function shown(req: FastifyRequest, value: string): string {
  const auth = req.headers.authorization ?? '';
  const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
  return token.length >= 8 && value.includes(token) ? '[REDACTED]' : value;
}

/** A version string safe to quote back in a message, or a placeholder. */
function quoted(version: string): string {
  return /^[0-9A-Za-z.+-]{1,64}$/.test(version) ? `"${version}"` : 'an unreadable version';
}

/**
 * Sends an answer already serialised: the lease answer is built from the
 * stored payload text (see LeaseStore.claimJson), so it skips fastify's
 * JSON.stringify of every job.
 */
function sendJson(reply: FastifyReply, json: string): FastifyReply {
  return reply.type('application/json; charset=utf-8').send(json);
}

/**
 * Aborts when the client's connection closes before the answer was handed to
 * it. Node emits 'finish' even for a response whose socket was destroyed
 * mid-write, so the socket's state at 'finish' decides whether it was delivered.
 */
function closeSignal(reply: FastifyReply): AbortSignal {
  const ac = new AbortController();
  const socket = reply.raw.socket;
  let delivered = false;
  reply.raw.once('finish', () => {
    delivered = !!socket && !socket.destroyed;
  });
  reply.raw.once('close', () => {
    if (!delivered) ac.abort();
  });
  return ac.signal;
}

/** The agent side of wire protocol v1 (DESIGN "Agent side"). */
export function registerAgentRoutes(app: FastifyInstance, opts: RouteOptions, deps: AgentRouteDeps): void {
  const { auth, leases, agents, waiters, clock, log } = deps;
  const versions = opts.agentVersions ?? { latestVersion: null, minVersion: null };
  // The versions ride on every lease answer (LeaseResponse.latestVersion/minVersion), serialised once.
  const versionFields =
    (versions.latestVersion ? `,"latestVersion":${JSON.stringify(versions.latestVersion)}` : '') +
    (versions.minVersion ? `,"minVersion":${JSON.stringify(versions.minVersion)}` : '');
  // Every lease answer says what a lease request may carry besides the poll (the agent falls back without it).
  const answerFields = `${versionFields},"carries":${JSON.stringify(CARRIED_FIELDS)}`;
  const NO_JOBS = `{"jobs":[]${answerFields}}`;
  const leaseTtlMs = opts.leaseTtlMs ?? 30_000;

  /** 426 for an agent below `agents.minVersion`, or whose version does not parse while a minimum is set. */
  function upgradeRequired(version: string): OutpostError | null {
    if (!versions.minVersion) return null;
    const standing = versionStanding(version, versions);
    if (standing !== 'unsupported' && standing !== 'invalid') return null;
    const target = versions.latestVersion ?? versions.minVersion;
    const why = standing === 'invalid' ? `reports ${quoted(version)}, which is not a version (MAJOR.MINOR.PATCH)` : `is version ${quoted(version)}, older than ${versions.minVersion}, the oldest this integration-proxy serves (agents.minVersion)`;
    return new OutpostError('upgrade_required', `this agent ${why}; install outpost-agent ${target} or newer and restart it`, { retryAfterMs: UPGRADE_RETRY_MS });
  }

  app.post<{ Body: LeaseRequest }>('/v1/agent/lease', { schema: { body: LeaseRequest, response: { 200: LeaseResponse } }, config: { doc: { summary: 'Long-poll for jobs (agent token); may carry the previous batch\'s results and lease renewals (recorded before the claim, statuses in the answer; such a poll is answered without a hold); a non-empty answer carries heldMs, the hold before the claim; every answer lists carries; answers name latestVersion/minVersion when configured; 426 upgrade_required for an agent below minVersion or with an unparseable version', responses: ERROR_RESPONSES } } }, async (req, reply) => {
    // heldMs (below) counts from here: never more than the time since the agent sent the poll.
    const arrivedAtMs = clock.monotonicMs();
    const closed = closeSignal(reply);
    const socket = req.raw.socket;
    const pool = await auth.agent(req);
    const body = req.body;
    const refusal = upgradeRequired(body.version);
    // A refused agent is still shown (flagged), and expected back after its Retry-After.
    // A poll that carries results or renewals is answered without a hold: their statuses are not held back.
    const carrying = !!body.results?.length || !!body.leases?.length;
    const holdMs = carrying ? 0 : Math.min(body.waitMs, opts.maxWaitMs);
    // An agent that renews leases is expected again within a lease TTL, as after a heartbeat. Carried results
    // alone do not stretch it: a longer expectation is not rewritten by the next, shorter poll, so a killed
    // agent would show stale only after a TTL instead of after its poll hold.
    const expectMs = refusal ? UPGRADE_RETRY_MS : body.leases?.length ? Math.max(holdMs, leaseTtlMs) : holdMs;
    if (await agents.touch(pool, body, expectMs)) {
      log.info('agent joined', { pool, agentId: shown(req, body.agentId), version: shown(req, body.version), versionStatus: versionStanding(body.version, versions) });
    }
    if (refusal) throw refusal;
    if (carrying) return answerCargo(reply, closed, pool, body, arrivedAtMs);
    const resources = new Set(body.resources);
    const deadline = clock.now() + holdMs;
    let woken = false;
    let parked = false;
    for (;;) {
      if (closed.aborted || socket.destroyed || deps.state() !== 'running') {
        // A wake-up this poll can no longer use goes to another poll.
        if (woken) void waiters.recheckPool(pool);
        return sendJson(reply, NO_JOBS);
      }
      const generation = waiters.generation(pool);
      // Taken before the claim stamps the leases' expiry, so the agent's fence (its send time + heldMs + TTL) never ends after it.
      const heldMs = Math.floor(clock.monotonicMs() - arrivedAtMs);
      const claimed = await leases.claimJson(pool, body.agentId, body.resources, body.max);
      if (claimed.refs.length) {
        // With its slots full the agent stops polling and only heartbeats (within a lease TTL): not stale.
        if (leaseTtlMs > holdMs) await agents.touch(pool, { agentId: body.agentId }, leaseTtlMs);
        deliver(closed, pool, claimed.refs);
        return sendJson(reply, `{"jobs":${claimed.json},"heldMs":${heldMs}${answerFields}}`);
      }
      if (woken) void waiters.recheckPool(pool);
      if (waiters.generation(pool) !== generation) continue;
      const remainingMs = deadline - clock.now();
      if (remainingMs <= 0) return sendJson(reply, NO_JOBS);
      if (!parked) checkParkedQuota(pool);
      parked = true;
      const outcome = await waiters.wait(pool, resources, remainingMs, closed);
      if (outcome !== 'woken' && outcome !== 'closed') return sendJson(reply, NO_JOBS);
      woken = outcome === 'woken';
    }
  });

  /**
   * A poll that carries results or renewals: they are recorded, as by the
   * separate routes, and the claim made right after, in one store operation
   * (one transaction on SQLite); it is never held. Their statuses ride on
   * the answer (`"results":[…]`, `"leases":[…]`). A poll whose agent left or
   * that reaches a stopping proxy records its cargo and claims nothing.
   */
  async function answerCargo(reply: FastifyReply, closed: AbortSignal, pool: string, body: LeaseRequest, arrivedAtMs: number): Promise<FastifyReply> {
    const live = !closed.aborted && !reply.raw.socket?.destroyed && deps.state() === 'running';
    // Taken before the claim stamps the leases' expiry, as for a held poll.
    const heldMs = Math.floor(clock.monotonicMs() - arrivedAtMs);
    const done = await leases.settleAndClaimJson(pool, body.agentId, body, body.resources, live ? body.max : 0);
    let carried = '';
    if (done.results) carried += `,"results":${JSON.stringify(done.results)}`;
    if (done.leases) carried += `,"leases":${JSON.stringify(done.leases)}`;
    if (!done.claimed.refs.length) return sendJson(reply, `{"jobs":[]${carried}${answerFields}}`);
    // With its slots full the agent stops polling and only heartbeats (within a lease TTL): not stale.
    await agents.touch(pool, { agentId: body.agentId }, leaseTtlMs);
    deliver(closed, pool, done.claimed.refs);
    return sendJson(reply, `{"jobs":${done.claimed.json},"heldMs":${heldMs}${carried}${answerFields}}`);
  }

  /** A poll that would park beyond the pool's quota gets 429 (it took no job; the claim ran first). */
  function checkParkedQuota(pool: string): void {
    const max = opts.maxParkedPollsPerPool;
    if (max === undefined || waiters.parkedIn(pool) < max) return;
    deps.metrics.quotaRefusals.inc({ quota: 'parked_polls_per_pool' });
    throw new OutpostError('rate_limited', `pool ${pool} already has ${max} parked polls on this replica (quotas.parkedPollsPerPool)`, { retryAfterMs: 10_000 });
  }

  /**
   * A lease answer that cannot be delivered (the agent left during the poll,
   * or the write failed) gives its jobs back at once, spending no attempt.
   */
  function deliver(closed: AbortSignal, pool: string, refs: LeaseRef[]): void {
    const giveBack = () => {
      leases.release(pool, refs).then(
        (r) => log.info('lease answer not delivered; jobs given back', { pool, released: r.filter((x) => x.status === 'released').length }),
        (err: unknown) => log.error('could not give back undelivered jobs', { pool, err }),
      );
    };
    if (closed.aborted) giveBack();
    else closed.addEventListener('abort', giveBack, { once: true });
  }

  app.post<{ Body: HeartbeatRequest }>('/v1/agent/heartbeat', { schema: { body: HeartbeatRequest, response: { 200: HeartbeatResponse } }, config: { doc: { summary: 'Renew leases (agent token)', responses: ERROR_RESPONSES } } }, async (req) => {
    const pool = await auth.agent(req);
    // An agent whose slots are all busy does not poll: it is expected again within a lease TTL.
    await agents.touch(pool, { agentId: req.body.agentId }, leaseTtlMs);
    return { leases: await leases.heartbeat(pool, req.body.agentId, req.body.leases) };
  });

  app.post<{ Body: GoodbyeRequest }>('/v1/agent/goodbye', { schema: { body: GoodbyeRequest, response: { 200: GoodbyeResponse } }, config: { doc: { summary: 'Say the agent is draining or offline, shown at once in GET /v1/agents (agent token)', responses: ERROR_RESPONSES } } }, async (req) => {
    const pool = await auth.agent(req);
    // A draining agent heartbeats while its jobs finish: expected again within a lease TTL.
    if (await agents.goodbye(pool, req.body.agentId, req.body.status, leaseTtlMs)) {
      log.info(req.body.status === 'offline' ? 'agent left' : 'agent draining', { pool, agentId: shown(req, req.body.agentId) });
    }
    return { status: req.body.status };
  });

  app.post<{ Body: ResultsRequest }>('/v1/agent/results', { schema: { body: ResultsRequest, response: { 200: ResultsResponse } }, config: { doc: { summary: 'Report results (agent token)', responses: ERROR_RESPONSES } } }, async (req) => {
    const pool = await auth.agent(req);
    return { results: await leases.results(pool, req.body.results) };
  });

  app.post<{ Body: ReleaseRequest }>('/v1/agent/release', { schema: { body: ReleaseRequest, response: { 200: ReleaseResponse } }, config: { doc: { summary: 'Give leases back, spending no attempt (agent token)', responses: ERROR_RESPONSES } } }, async (req) => {
    const pool = await auth.agent(req);
    return { leases: await leases.release(pool, req.body.leases) };
  });
}
