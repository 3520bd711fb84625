import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { OutpostError } from '../../util/errors.js';
import { PoolKeyRequest, PoolKeyView, PoolName } from '../../protocol/schemas.js';
import type { PoolKey } from '../store/pools.js';
import { ERROR_RESPONSES, json } from '../../protocol/openapi.js';
import { canSee } from './auth.js';
import type { PoolRouteDeps } from './context.js';

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
export function registerPoolRoutes(app: FastifyInstance, deps: PoolRouteDeps): void {
  const { auth, pools } = deps;

  const noKey = (pool: string) =>
    new OutpostError('not_found', `pool ${pool} has no sealing key (integration-proxy pool set-key, or PUT /v1/pools/{pool}/key)`);

  app.get<{ Params: { pool: string } }>('/v1/pools/:pool/key', {
    schema: { params: PoolParams, response: { 200: PoolKeyView } },
    config: { doc: {
      summary: "The pool's public sealing key (admin or viewer token of the pool): seal secret payload fields (passwords) with it (libsodium crypto_box_seal)",
      responses: { ...ERROR_RESPONSES, '404': { description: 'not_found: the pool has no key (also for another pool)', ...json('ErrorBody') } },
    } },
  }, async (req) => {
    const p = await auth.admin(req);
    const key = canSee(p, req.params.pool) ? await pools.getKey(req.params.pool) : undefined;
    if (!key) throw noKey(req.params.pool);
    return view(key);
  });

  app.put<{ Params: { pool: string }; Body: PoolKeyRequest }>(
    '/v1/pools/:pool/key',
    {
      schema: { params: PoolParams, body: PoolKeyRequest, response: { 200: PoolKeyView } },
      config: { doc: { summary: "Set the pool's public sealing key (admin token of the pool, or the configured admin token); the private key stays with the pool's agents", responses: ERROR_RESPONSES } },
    },
    async (req) => {
      const p = await auth.admin(req);
      if (!canSee(p, req.params.pool)) throw new OutpostError('forbidden', 'this token sets the key of its own pool only');
      return view(await pools.setKey(req.params.pool, req.body.publicKey));
    },
  );
}
