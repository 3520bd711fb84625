import { OutpostError } from '../util/errors.js';
import { IDENTITY_OPERATIONS, type Connector, type OperationContext } from './types.js';

type Op = (payload: unknown, ctx: OperationContext) => Promise<unknown>;

/**
 * A connector whose implementation (and its driver: knex, pg, mysql2,
 * tedious, ldapts…) is imported on its first operation, not at start: an
 * idle agent, or one whose resource is never used, does not pay for it in
 * memory or start-up time. The factory still validates the config at once;
 * only `load` is deferred. A failed load is tried again on the next job.
 */
export function lazyConnector(name: string, kind: string, extraTypes: readonly string[], load: () => Promise<Connector>): Connector {
  let loading: Promise<Connector> | undefined;
  const get = (): Promise<Connector> => {
    loading ??= load().catch((err: unknown) => {
      loading = undefined;
      throw err;
    });
    return loading;
  };
  const forward =
    (op: string): Op =>
    async (payload, ctx) => {
      const real = await get();
      const fn = (real as unknown as Record<string, Op | undefined>)[op];
      if (typeof fn !== 'function') throw new OutpostError('unknown_type', `resource "${name}" (kind ${kind}) does not serve "${op}"`);
      return fn.call(real, payload, ctx);
    };
  const extra: Record<string, Op> = {};
  for (const type of extraTypes) {
    extra[type] = async (payload, ctx) => {
      const op = (await get()).extra[type];
      if (typeof op !== 'function') throw new OutpostError('unknown_type', `resource "${name}" (kind ${kind}) does not serve "${type}"`);
      return op(payload, ctx);
    };
  }
  const connector: Record<string, unknown> = {
    kind,
    extra,
    // Nothing to close when nothing was loaded; a load in progress is awaited, then closed.
    close: async () => {
      const pending = loading;
      if (pending) await (await pending.catch(() => undefined))?.close();
    },
  };
  for (const op of IDENTITY_OPERATIONS) connector[op] = forward(op);
  return connector as unknown as Connector;
}
