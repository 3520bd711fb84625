/** Types of scripts/gen-protocol-doc.mjs for the TypeScript spec that imports it. */
export declare const DOC_FILE: string;
export declare const HEADER_FILE: string;
export declare function renderProtocolDoc(input: {
  openapi: Record<string, unknown>;
  payloads: Record<string, unknown>;
  statuses: Record<string, unknown>;
  header: string;
}): string;
