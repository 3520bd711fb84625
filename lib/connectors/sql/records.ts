import { OutpostError } from '../../util/errors.js';
import type { AccountRecord, EntitlementRecord, GrantRecord } from '../../protocol/operations.js';
import { throwIfAborted } from '../../util/abort.js';
import type { OperationContext } from '../types.js';
import type { Row } from './drivers/index.js';

/** A column value as JSON: dates as ISO strings, bytes as base64, big integers as strings. */
export function jsonValue(v: unknown): unknown {
  if (v === undefined) return null;
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return Number.isNaN(v.getTime()) ? null : v.toISOString();
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  if (Array.isArray(v)) return v.map(jsonValue);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonValue(x)]));
  return v;
}

/** A row as a plain JSON record (for `sql.query`). */
export function jsonRow(row: Row): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k] = jsonValue(v);
  return out;
}

/** Truthiness as databases spell it: true/1/'1'/'t'/'true'/'y'/'yes'/'Y' (any case). */
export function truthy(v: unknown): boolean {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return Number(v) !== 0;
  if (typeof v === 'string') return /^(1|t|true|y|yes|on|enabled|active)$/i.test(v.trim());
  if (Buffer.isBuffer(v)) return v.some((b) => b !== 0); // MySQL BIT(1)
  return false;
}

const str = (v: unknown): string | null => (v === null || v === undefined ? null : String(jsonValue(v)));

/** Reads record fields from a row through a column map (`field → column`, default the field's own name). */
export class ColumnMap {
  /** The account columns that are record fields: computed once, not per row of a million-row listing. */
  private readonly accountColumns: ReadonlySet<string>;
  private readonly a: { id: string; uid: string; name: string; email: string; enabled: string };

  constructor(private readonly columns: Readonly<Record<string, string>>) {
    this.a = { id: this.col('id'), uid: this.col('uid'), name: this.col('name'), email: this.col('email'), enabled: this.col('enabled') };
    this.accountColumns = new Set(Object.values(this.a));
  }

  col(field: string): string {
    return this.columns[field] ?? field;
  }

  /** Account: id, uid, name, email, enabled from their columns; every other column → attributes. */
  account(row: Row): AccountRecord {
    const attributes: Record<string, unknown> = {};
    for (const k in row) if (!this.accountColumns.has(k)) attributes[k] = jsonValue(row[k]);
    const c = this.a;
    return {
      id: this.id(row, 'id'),
      uid: str(row[c.uid]),
      name: str(row[c.name]),
      email: str(row[c.email]),
      // No enabled column means the application has no such state: every account is enabled.
      enabled: c.enabled in row ? truthy(row[c.enabled]) : true,
      attributes,
    };
  }

  entitlement(row: Row, defaultKind: 'group' | 'role'): EntitlementRecord {
    const kind = str(row[this.col('kind')]);
    return {
      id: this.id(row, 'id'),
      uid: str(row[this.col('uid')]),
      name: str(row[this.col('name')]),
      kind: kind === 'group' || kind === 'role' ? kind : defaultKind,
      description: str(row[this.col('description')]),
    };
  }

  grant(row: Row): GrantRecord {
    return { accountId: this.id(row, 'accountId'), entitlementId: this.id(row, 'entitlementId') };
  }

  private id(row: Row, field: string): string {
    const v = row[this.col(field)];
    if (v === null || v === undefined) {
      throw new OutpostError('config_error', `column "${this.col(field)}" (record field ${field}) is missing or null; map it with "columns"`);
    }
    return String(jsonValue(v));
  }
}

/**
 * Groups streamed rows into pages of `pageSize` and writes each one (a row
 * that `map` turns into undefined is left out, e.g. by an allow-list),
 * awaiting `ctx.writePage` before pulling more rows: the awaited write is the
 * backpressure, so memory holds one page plus the driver's small buffer.
 * Returns the number of records written.
 */
export async function writeListing(batches: AsyncIterable<Row[]>, pageSize: number, map: (row: Row) => unknown, ctx: OperationContext): Promise<number> {
  let page: unknown[] = [];
  let written = 0;
  for await (const batch of batches) {
    for (const row of batch) {
      const record = map(row);
      if (record === undefined) continue;
      page.push(record);
      if (page.length >= pageSize) {
        throwIfAborted(ctx.signal);
        await ctx.writePage(page);
        written += page.length;
        page = [];
        // Checked again after the write: a listing must stop at the first page boundary after an abort.
        throwIfAborted(ctx.signal);
      }
    }
  }
  if (page.length) {
    throwIfAborted(ctx.signal);
    await ctx.writePage(page);
    written += page.length;
  }
  return written;
}
