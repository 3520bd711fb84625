import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { OutpostError } from '../../util/errors.js';
import { PoolKeyRequest, PoolName, type PoolKeyView } from '../../protocol/schemas.js';
import type { PoolKey } from '../store/pools.js';
import { canSee } from './auth.js';
import type { RouteDeps } from './context.js';

const PoolParams = Type.Object({ pool: PoolName });

function view(k: PoolKey): PoolKeyView {
  return { pool: k.pool, publicKey: k.publicKey, algorithm: k.algorithm, updatedAt: new Date(k.updatedAt).toISOString() };
}

/**
 * A pool's public sealing key (issue 12, secrets in payloads). Roles come from
 * the auth hook (auth.ts `accessOf`): GET is `read` (admin or viewer token),
 * PUT is `write` (admin token); an agent token is refused both (403). A pool
 * token reaches only its own pool; the configured admin token every pool. As
 * for jobs, another pool's key is `not_found` to a reader (no pool names leak)
 * and a write to another pool is `forbidden` (as an enqueue there is).
 */
export function registerPoolRoutes(app: FastifyInstance, deps: Pick<RouteDeps, 'auth' | 'pools'>): void {
  const { auth, pools } = deps;

  const noKey = (pool: string) =>
    new OutpostError('not_found', `pool ${pool} has no sealing key (integration-proxy pool set-key, or PUT /v1/pools/{pool}/key)`);

  app.get<{ Params: { pool: string } }>('/v1/pools/:pool/key', { schema: { params: PoolParams } }, async (req) => {
    const p = await auth.admin(req);
    const key = canSee(p, req.params.pool) ? await pools.getKey(req.params.pool) : undefined;
    if (!key) throw noKey(req.params.pool);
    return view(key);
  });

  app.put<{ Params: { pool: string }; Body: PoolKeyRequest }>(
    '/v1/pools/:pool/key',
    { schema: { params: PoolParams, body: PoolKeyRequest } },
    async (req) => {
      const p = await auth.admin(req);
      if (!canSee(p, req.params.pool)) throw new OutpostError('forbidden', 'this token sets the key of its own pool only');
      return view(await pools.setKey(req.params.pool, req.body.publicKey));
    },
  );
}
