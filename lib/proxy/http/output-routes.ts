import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from '@sinclair/typebox';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import { OutpostError } from '../../util/errors.js';
import { Id, NDJSON_MEDIA_TYPE, OutputPageHead, OutputRequest, OutputResponse } from '../../protocol/schemas.js';
import { ERROR_RESPONSES, NOT_FOUND, json } from '../../protocol/openapi.js';
import type { AgentRouteDeps } from './context.js';
import { parseNdjsonPage, toNdjson, type NdjsonPage } from './ndjson-page.js';

const JobParams = Type.Object({ id: Id });
/** The NDJSON form once parsed (ndjson-page.ts): the head is checked here, the record lines were framed there. */
const ParsedNdjsonPage = Type.Object({ head: OutputPageHead, ndjson: Type.Unsafe<Buffer>({ description: 'record lines (bytes), framed by ndjson-page.ts' }), count: Type.Integer({ minimum: 0 }) });

/** What a request body is after the content-type parsers: the old JSON form or the NDJSON one. */
type OutputBody = OutputRequest | NdjsonPage;

/**
 * Inflates a `Content-Encoding: gzip` body as it arrives. fastify counts the
 * inflated bytes against the body limit (so a small bomb cannot grow past
 * it) and the received ones against Content-Length.
 */
function inflate(req: FastifyRequest, _reply: unknown, payload: Readable): Promise<Readable> {
  const encoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (encoding === 'identity') return Promise.resolve(payload);
  if (encoding !== 'gzip') return Promise.reject(new OutpostError('invalid_request', 'content-encoding: only gzip is accepted'));
  const gunzip = createGunzip() as ReturnType<typeof createGunzip> & { receivedEncodedLength: number };
  gunzip.receivedEncodedLength = 0;
  gunzip.on('error', () => {
    // Deliberately a no-op: a body that only claims gzip fails here; fastify answers 400 from its own listener
    // when it reads the body; when it never does (an unsupported content-type, a body over the limit), the error
    // must not go unhandled.
  });
  payload.on('data', (chunk: Buffer) => (gunzip.receivedEncodedLength += chunk.length));
  payload.on('error', (err) => gunzip.destroy(err));
  return Promise.resolve(payload.pipe(gunzip));
}

/**
 * `POST /v1/agent/jobs/{id}/output`: one page of a listing, fenced by the
 * lease token, idempotent by seq. Two forms: NDJSON (the head line, then one
 * record a line, optionally gzip-compressed), stored as it came; and the
 * older JSON `{leaseToken, seq, records}` (agents before this release;
 * accepted for one more version), converted once to the same stored text.
 */
export function registerOutputRoutes(app: FastifyInstance, deps: Pick<AgentRouteDeps, 'auth' | 'output'>): void {
  const { auth, output } = deps;
  // Root scope, so the route is in the OpenAPI document built right after registration. On any
  // other route an NDJSON body fails that route's own schema (400), as any other wrong body.
  app.addContentTypeParser(NDJSON_MEDIA_TYPE, { parseAs: 'buffer' }, (_req, body, done) => {
    try {
      done(null, parseNdjsonPage(typeof body === 'string' ? Buffer.from(body) : body));
    } catch (err) {
      done(err as OutpostError, undefined);
    }
  });

  app.post<{ Body: OutputBody; Params: { id: string } }>(
    '/v1/agent/jobs/:id/output',
    {
      preParsing: inflate,
      schema: {
        body: { content: { 'application/json': { schema: OutputRequest }, [NDJSON_MEDIA_TYPE]: { schema: ParsedNdjsonPage } } },
        params: JobParams,
        response: { 200: OutputResponse },
      },
      config: {
        doc: {
          summary:
            'Append one output page (agent token). application/x-ndjson: the first line {leaseToken, seq} (OutputPageHead), then one record a line, ' +
            'at most 10 000, stored as sent; Content-Encoding: gzip accepted. application/json: OutputRequest (the older form, accepted for one more version). ' +
            'Both count against the body limit (inflated) and the output quotas (413 too_large)',
          requestContent: {
            [NDJSON_MEDIA_TYPE]: { schema: { type: 'string', description: 'First line an OutputPageHead, then one JSON record a line' }, example: '{"leaseToken":"…","seq":0}\n{"id":"u1"}\n{"id":"u2"}\n' },
          },
          responses: { ...ERROR_RESPONSES, ...NOT_FOUND, '409': { description: 'lease_lost', ...json('ErrorBody') } },
        },
      },
    },
    async (req) => {
      const pool = await auth.agent(req);
      const body = req.body;
      const { leaseToken, seq } = 'head' in body ? (body.head as OutputPageHead) : body;
      const page = 'head' in body ? body : { ndjson: toNdjson(body.records), count: body.records.length };
      const status = await output.appendNdjson(pool, req.params.id, leaseToken, seq, page);
      // Another pool's job is "not found": a token never learns that it exists.
      if (status === 'not_found') throw new OutpostError('not_found', 'no such job');
      if (status === 'lost') throw new OutpostError('lease_lost', 'the lease of this job is gone');
      return { status };
    },
  );
}
