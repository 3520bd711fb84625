import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { buildOpenApi } from '../lib/proxy/http/openapi-document.js';
import { PAYLOAD_SCHEMAS } from '../lib/protocol/operations.js';
import { HTTP_STATUS_BY_CODE } from '../lib/protocol/errors.js';
import { DOC_FILE, HEADER_FILE, renderProtocolDoc } from '../scripts/gen-protocol-doc.mjs';

/** docs/protocol.md is generated from the schemas (`npm run docs`); it must not drift from them. */
describe('docs/protocol.md', () => {
  const rendered = () =>
    renderProtocolDoc({
      openapi: buildOpenApi(),
      payloads: JSON.parse(JSON.stringify(PAYLOAD_SCHEMAS)) as Record<string, unknown>,
      statuses: HTTP_STATUS_BY_CODE,
      header: readFileSync(HEADER_FILE, 'utf8'),
    });

  it('is what the schemas give today (run `npm run docs` after changing lib/protocol or docs/protocol-header.md)', () => {
    expect(readFileSync(DOC_FILE, 'utf8')).toBe(rendered());
  });

  it('covers every route of the OpenAPI document and every job type', () => {
    const doc = rendered();
    for (const [path, item] of Object.entries(buildOpenApi().paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(item).filter((m) => m !== 'parameters')) expect(doc).toContain(`### \`${method.toUpperCase()} ${path}\``);
    }
    for (const type of Object.keys(PAYLOAD_SCHEMAS)) expect(doc).toContain(`### \`${type}\``);
    expect(doc).toContain('## Leases and fencing');
  });
});
