import type { Connector, OperationContext } from '../connectors/types.js';
import { IDENTITY_OPERATIONS } from '../connectors/types.js';
import { payloadSchemaOf, RESOURCELESS_TYPES, type PingPayload } from '../protocol/operations.js';
import { assertValid } from '../protocol/validate.js';
import type { LeasedJob } from '../protocol/schemas.js';
import { OutpostError } from '../util/errors.js';
import { sleep, type Clock } from '../util/clock.js';

/** What the dispatcher needs. */
export interface DispatchDeps {
  /** Connectors by resource name (built by the composition root from `resources`). */
  connectors: ReadonlyMap<string, Connector>;
  clock: Clock;
  agentId: string;
}

/** Runs one job's operation: a job in, a JSON result out, or an OutpostError thrown. */
export type Dispatch = (job: Pick<LeasedJob, 'type' | 'resource' | 'payload'>, ctx: OperationContext) => Promise<unknown>;

const IDENTITY: ReadonlySet<string> = new Set(IDENTITY_OPERATIONS);

/**
 * The job-type registry. `ping` is built in; identity operations and
 * kind-specific ones (`ldap.search`, `sql.query`) go to the connector of the
 * job's `resource`. Every payload is validated before any connector sees it.
 * Failures are non-retryable OutpostErrors with a clear message: an unknown
 * type or resource will not fix itself on another attempt.
 */
export function createDispatcher(deps: DispatchDeps): Dispatch {
  // The same answer for every ping (it carries no secret, and results are never rewritten by value).
  const pong: Readonly<{ ok: true; agentId: string }> = Object.freeze({ ok: true as const, agentId: deps.agentId });
  return async (job, ctx) => {
    // Own properties only: `constructor`, `toString`… are inherited from Object.prototype, not job types.
    const schema = payloadSchemaOf(job.type);
    if (!schema) throw new OutpostError('unknown_type', `unknown job type "${job.type}"`);
    const payload = assertValid(schema, job.payload ?? {}, 'payload');
    if (job.type === 'ping') return ping(payload as PingPayload, ctx, deps, pong);
    if (RESOURCELESS_TYPES.has(job.type)) throw new OutpostError('unknown_type', `job type "${job.type}" has no handler on this agent`);
    if (!job.resource) throw new OutpostError('invalid_request', `job type "${job.type}" needs a resource`);
    const connector = deps.connectors.get(job.resource);
    if (!connector) throw new OutpostError('unknown_resource', `resource "${job.resource}" is not configured on agent ${deps.agentId}`);
    if (IDENTITY.has(job.type)) {
      const op = (connector as unknown as Record<string, (p: unknown, c: OperationContext) => Promise<unknown>>)[job.type];
      if (typeof op !== 'function') throw new OutpostError('unknown_type', `resource "${job.resource}" does not serve "${job.type}"`);
      return op.call(connector, payload, ctx);
    }
    const extra = Object.hasOwn(connector.extra, job.type) ? connector.extra[job.type] : undefined;
    if (typeof extra !== 'function') {
      throw new OutpostError('unknown_type', `resource "${job.resource}" (kind ${connector.kind}) does not serve "${job.type}"`);
    }
    return extra(payload, ctx);
  };
}

/** The built-in liveness job: waits `delayMs` (abortable) and names the agent that ran it. */
async function ping<T>(payload: PingPayload, ctx: OperationContext, deps: DispatchDeps, pong: T): Promise<T> {
  if (payload.delayMs) await sleep(deps.clock, payload.delayMs, ctx.signal);
  return pong;
}
