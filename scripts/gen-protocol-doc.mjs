#!/usr/bin/env node
// Writes docs/protocol.md: the hand-written header (docs/protocol-header.md), then the routes,
// request/response schemas, job payloads and error statuses: the OpenAPI document generated from
// the proxy's registered routes (lib/proxy/http/openapi-document.ts buildOpenApi(), a fastify app
// built but never started) and, from lib/protocol, PAYLOAD_SCHEMAS and HTTP_STATUS_BY_CODE. `npm run docs` builds dist/ first;
// spec/protocol-doc.test.ts renders the same in memory and compares with the committed file.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
export const DOC_FILE = `${ROOT}docs/protocol.md`;
export const HEADER_FILE = `${ROOT}docs/protocol-header.md`;

/** A one-line type of a JSON schema, e.g. `string (1..128)` or `LeasedJob[]`. */
function typeOf(s) {
  if (!s || typeof s !== 'object') return 'any';
  if (s.$ref) return `[${s.$ref.split('/').pop()}](#${s.$ref.split('/').pop().toLowerCase()})`;
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (s.enum) return s.enum.map((v) => `\`${JSON.stringify(v)}\``).join(' \\| ');
  const alts = s.anyOf ?? s.oneOf;
  if (alts) return alts.map(typeOf).join(' \\| ');
  const bounds = (lo, hi) => (lo !== undefined || hi !== undefined ? ` (${lo ?? ''}..${hi ?? ''})` : '');
  switch (s.type) {
    case 'string':
      return `string${bounds(s.minLength, s.maxLength)}${s.pattern ? ` matching \`${s.pattern}\`` : ''}${s.format ? ` (${s.format})` : ''}`;
    case 'integer':
    case 'number':
      return `${s.type}${bounds(s.minimum, s.maximum)}`;
    case 'array':
      return `${typeOf(s.items)}[]${bounds(s.minItems, s.maxItems)}`;
    case 'object':
      if (s.patternProperties) {
        const [k, v] = Object.entries(s.patternProperties)[0];
        return `map of \`${k}\` → ${typeOf(v)}${s.maxProperties ? ` (at most ${s.maxProperties})` : ''}`;
      }
      if (s.properties) return `{${Object.keys(s.properties).join(', ')}}`;
      return 'object';
    case undefined:
      return 'any JSON';
    default:
      return String(s.type);
  }
}

const cell = (text) => String(text ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** A table of an object schema's fields, or its one-line type. */
function schemaBlock(s) {
  if (s?.type === 'object' && s.properties) {
    const required = new Set(s.required ?? []);
    const rows = Object.entries(s.properties).map(([name, p]) => {
      const nested = p.type === 'object' && p.properties ? ` — ${Object.entries(p.properties).map(([k, v]) => `\`${k}\`${(p.required ?? []).includes(k) ? '' : '?'}: ${typeOf(v)}`).join('; ')}` : '';
      return `| \`${name}\` | ${required.has(name) ? 'yes' : 'no'} | ${typeOf(p)}${nested} | ${cell(p.description)} |`;
    });
    const extra = s.additionalProperties === false ? '\nNo other fields are accepted.\n' : '';
    return `| field | required | type | notes |\n| --- | --- | --- | --- |\n${rows.join('\n')}\n${extra}`;
  }
  return `${typeOf(s)}\n`;
}

/**
 * The whole document from plain JSON inputs: the OpenAPI document, the payload schema of each
 * job type, the HTTP status of each error code, and the header text.
 */
export function renderProtocolDoc({ openapi, payloads, statuses, header }) {
  const out = [header.trimEnd(), '', '## Routes', ''];
  for (const [path, item] of Object.entries(openapi.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (method === 'parameters') continue;
      out.push(`### \`${method.toUpperCase()} ${path}\``, '', cell(op.summary), '');
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])];
      const paramType = (s) => (s?.enum ? `one of ${typeOf(s)}` : `${s?.type ?? 'string'}${s?.description ? `: ${s.description}` : ''}`);
      if (params.length) out.push(`Parameters: ${params.map((p) => `\`${p.name}\` (${p.in}${p.required ? ', required' : ''}, ${paramType(p.schema)})`).join(', ')}.`, '');
      out.push(`Auth: ${op.security ? 'bearer token' : path.startsWith('/v1/') ? 'bearer token' : 'none'}.`, '');
      const body = op.requestBody?.content?.['application/json']?.schema;
      if (body) out.push(`Request body: ${typeOf(body)}.`, '');
      out.push('| status | meaning | body |', '| --- | --- | --- |');
      for (const [status, r] of Object.entries(op.responses ?? {})) {
        const content = r.content ? Object.entries(r.content)[0] : undefined;
        out.push(`| ${status} | ${cell(r.description)} | ${content ? `${content[0] === 'application/json' ? '' : `\`${content[0]}\` `}${typeOf(content[1].schema)}` : ''} |`);
      }
      out.push('');
    }
  }
  out.push('## Schemas', '');
  for (const [name, s] of Object.entries(openapi.components.schemas)) {
    out.push(`### ${name}`, '');
    if (s.description) out.push(cell(s.description), '');
    out.push(schemaBlock(s));
  }
  out.push('## Job types and payloads', '', 'The `payload` of `POST /v1/jobs` for each `type`; the proxy checks it at enqueue (400 naming the field) and the agent again before any connector sees it.', '');
  for (const [type, s] of Object.entries(payloads)) {
    out.push(`### \`${type}\``, '');
    out.push(Object.keys(s.properties ?? {}).length ? schemaBlock(s) : 'No fields (`{}`).\n');
  }
  out.push('## Error codes and HTTP statuses', '', '| code | status |', '| --- | --- |');
  for (const [code, status] of Object.entries(statuses)) out.push(`| \`${code}\` | ${status} |`);
  out.push('');
  return `${out.join('\n')}`;
}

async function main() {
  const dist = new URL('../dist/lib/protocol/', import.meta.url);
  const [{ buildOpenApi }, { PAYLOAD_SCHEMAS }, { HTTP_STATUS_BY_CODE }] = await Promise.all([
    import(new URL('../dist/lib/proxy/http/openapi-document.js', import.meta.url).href),
    import(new URL('operations.js', dist).href),
    import(new URL('errors.js', dist).href),
  ]);
  const text = renderProtocolDoc({
    openapi: buildOpenApi(),
    payloads: JSON.parse(JSON.stringify(PAYLOAD_SCHEMAS)),
    statuses: HTTP_STATUS_BY_CODE,
    header: readFileSync(HEADER_FILE, 'utf8'),
  });
  writeFileSync(DOC_FILE, text);
  process.stdout.write(`wrote ${DOC_FILE} (${text.length} characters)\n`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
