import type { Connector, OperationContext } from '../connectors/types.js';
import { IDENTITY_OPERATIONS } from '../connectors/types.js';
import { payloadSchemaOf, RESOURCELESS_TYPES, SECRET_FIELDS, type PingPayload } from '../protocol/operations.js';
import { assertValid } from '../protocol/validate.js';
import type { LeasedJob } from '../protocol/schemas.js';
import { OutpostError } from '../util/errors.js';
import { sleep, type Clock } from '../util/clock.js';
import { registerJobSecret, REDACTED } from '../util/redact.js';
import type { SecretOpener } from './secrets.js';

/** What the dispatcher needs. */
export interface DispatchDeps {
  /** Connectors by resource name (built by the composition root from `resources`). */
  connectors: ReadonlyMap<string, Connector>;
  clock: Clock;
  agentId: string;
  /** Opens sealed payload secrets with the pool's key (lib/agent/secrets.ts); none: a sealed value is refused. */
  opener?: SecretOpener;
  /** Resources whose config sets `allowUnsealedSecrets: true` (a plain-string password is accepted). */
  unsealedAllowed?: ReadonlySet<string>;
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
      const fields = (Object.hasOwn(SECRET_FIELDS, job.type) ? SECRET_FIELDS[job.type] : undefined) ?? [];
      if (!fields.length) return op.call(connector, payload, ctx);
      return withOpenedSecrets(job.type, job.resource, fields, payload as Record<string, unknown>, deps, (opened) => op.call(connector, opened, ctx));
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

/**
 * Opens the secret fields of `payload` (a sealed box, or a plain string where
 * the resource allows it), runs `fn` with the plaintexts in place, and forgets
 * them: each is registered for log redaction only while the job runs (so the
 * registry holds the secrets of jobs in flight, not of every job ever run).
 * An error that quotes the job's own secret is rethrown without it (the
 * caller sent that secret, so this answers no question); a result that
 * carries it is withheld. Neither the value nor the box is ever echoed.
 */
async function withOpenedSecrets(
  type: string,
  resource: string,
  fields: readonly string[],
  payload: Record<string, unknown>,
  deps: DispatchDeps,
  fn: (opened: Record<string, unknown>) => Promise<unknown>,
): Promise<unknown> {
  const opened: Record<string, unknown> = { ...payload };
  const plaintexts: string[] = [];
  const releases: Array<() => void> = [];
  try {
    for (const field of fields) {
      const value = payload[field];
      if (value === undefined) continue;
      let plain: string;
      if (typeof value === 'string') {
        if (!deps.unsealedAllowed?.has(resource)) {
          throw new OutpostError(
            'invalid_request',
            `${field}: a plain-string secret is refused; seal it with the pool's public key (bin/agent seal), or set allowUnsealedSecrets on resource "${resource}"`,
          );
        }
        plain = value;
      } else {
        const sealed = (value as { sealed: string }).sealed;
        if (!deps.opener) throw new OutpostError('invalid_request', `${field}: the value is sealed but this agent has no sealing key (sealing.privateKeyFile)`);
        plain = await deps.opener.open(sealed, field);
      }
      releases.push(registerJobSecret(plain));
      plaintexts.push(plain);
      opened[field] = plain;
    }
    let result: unknown;
    try {
      result = await fn(opened);
    } catch (err) {
      throw withoutSecrets(err, plaintexts);
    }
    const text = result === undefined ? '' : JSON.stringify(result);
    if (plaintexts.some((p) => text.includes(p) || text.includes(JSON.stringify(p).slice(1, -1)))) {
      throw new OutpostError('internal', `the ${type} result carried a secret field; it was withheld`);
    }
    return result;
  } finally {
    for (const release of releases) release();
  }
}

/** `err` as an OutpostError whose message does not quote any of `plaintexts` (same code and retryability). */
function withoutSecrets(err: unknown, plaintexts: readonly string[]): unknown {
  if (!(err instanceof Error) || !plaintexts.some((p) => err.message.includes(p))) return err;
  let message = err.message;
  for (const p of plaintexts) message = message.split(p).join(REDACTED);
  if (err instanceof OutpostError) return new OutpostError(err.code, message, { retryable: err.retryable });
  const scrubbed = new Error(message);
  scrubbed.name = err.name;
  const code = (err as { code?: unknown }).code;
  if (code !== undefined) Object.assign(scrubbed, { code });
  return scrubbed;
}
