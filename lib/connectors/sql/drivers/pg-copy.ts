import type pg from 'pg';
import type { Row } from './types.js';

/**
 * Streams a parameterless PostgreSQL query with `COPY (query) TO STDOUT`
 * instead of a cursor. Measured on 1 000 000 rows: node-postgres spends
 * ~2 s parsing DataRow messages alone, where COPY text arrives in ~0.5 s
 * (as fast as `psql \copy`). Values come back exactly as the driver would
 * give them: the column types are read first (`… limit 0`) and every text
 * value goes through the client's own type parser for that type.
 * Backpressure is TCP's: the socket is paused while a batch waits.
 */

type Parser = (text: string) => unknown;
type PgClient = pg.Client & {
  getTypeParser(oid: number, format: 'text'): Parser;
  connection: { stream: { pause(): void; resume(): void } };
};

/** Column names and their text parsers, from the statement's row description (no rows are read). */
export async function describeColumns(conn: unknown, sql: string): Promise<{ names: string[]; parsers: Parser[] }> {
  const client = conn as PgClient;
  // The newline keeps a trailing `-- comment` of the statement from swallowing the closing parenthesis.
  const res = await client.query({ text: `select * from (${sql}\n) as outpost_columns limit 0` });
  return { names: res.fields.map((f) => f.name), parsers: res.fields.map((f) => client.getTypeParser(f.dataTypeID, 'text')) };
}

/** Undoes COPY text escaping (the server emits \\ \b \f \n \r \t \v; octal and hex are accepted too). */
export function unescapeCopy(s: string): string {
  if (!s.includes('\\')) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i] as string;
    if (ch !== '\\' || i + 1 >= s.length) {
      out += ch;
      continue;
    }
    const n = s[++i] as string;
    const simple: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v' };
    if (simple[n] !== undefined) out += simple[n];
    else if (/[0-7]/.test(n)) {
      const m = /^[0-7]{1,3}/.exec(s.slice(i)) as RegExpExecArray;
      out += String.fromCharCode(parseInt(m[0], 8));
      i += m[0].length - 1;
    } else if (n === 'x' && /^[0-9a-fA-F]/.test(s.slice(i + 1))) {
      const m = /^[0-9a-fA-F]{1,2}/.exec(s.slice(i + 1)) as RegExpExecArray;
      out += String.fromCharCode(parseInt(m[0], 16));
      i += m[0].length;
    } else out += n;
  }
  return out;
}

/** One COPY OUT, as a node-postgres Submittable that queues parsed rows. */
class CopyOut {
  rows: Row[] = [];
  finished = false;
  failure: Error | undefined;
  paused = false;
  wake: (() => void) | undefined;
  private pending: Buffer | undefined;
  private readonly template: Row;

  constructor(
    private readonly text: string,
    private readonly names: string[],
    private readonly parsers: Parser[],
    private readonly highWaterRows: number,
    private readonly socket: { pause(): void },
  ) {
    this.template = Object.fromEntries(names.map((n) => [n, null]));
  }

  submit(connection: { query(text: string): void }): void {
    connection.query(this.text);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    const chunk = this.pending ? Buffer.concat([this.pending, msg.chunk]) : msg.chunk;
    this.pending = undefined;
    let start = 0;
    // A raw newline only ends a row: newlines inside values arrive escaped as "\n".
    for (let nl = chunk.indexOf(10, start); nl >= 0; nl = chunk.indexOf(10, start)) {
      this.rows.push(this.parseLine(chunk.toString('utf8', start, nl)));
      start = nl + 1;
    }
    if (start < chunk.length) this.pending = chunk.subarray(start);
    if (this.rows.length >= this.highWaterRows && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
    this.wake?.();
  }

  private parseLine(line: string): Row {
    const parts = line.split('\t');
    // Copying a prebuilt object gives every row the same shape (fast property access), as node-postgres does.
    const row: Row = { ...this.template };
    // Most rows hold no backslash at all: no NULL marker, nothing to unescape.
    const plain = !line.includes('\\');
    for (let k = 0; k < this.names.length; k++) {
      const raw = parts[k] ?? '\\N';
      const name = this.names[k] as string;
      if (plain) row[name] = (this.parsers[k] as Parser)(raw);
      else row[name] = raw === '\\N' ? null : (this.parsers[k] as Parser)(unescapeCopy(raw));
    }
    return row;
  }

  handleError(err: Error): void {
    this.failure ??= err;
    this.wake?.();
  }

  handleReadyForQuery(): void {
    this.finished = true;
    this.wake?.();
  }

  handleCommandComplete(): void {}
  handleEmptyQuery(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleCopyInResponse(): void {}
}

/**
 * Yields the rows of `sql` in batches of up to `batchRows`. If the consumer
 * stops early, the rest of the COPY is still on the wire, so the connection
 * is destroyed (`destroy`) rather than handed to the next job.
 */
export async function* copyRows(conn: unknown, sql: string, batchRows: number, destroy: () => void, isCancelled = () => false): AsyncIterable<Row[]> {
  const { names, parsers } = await describeColumns(conn, sql);
  // A cancel that landed between the two statements found nothing to stop: do not start the second.
  if (isCancelled()) throw Object.assign(new Error('cancelled before COPY started'), { code: '57014' });
  const client = conn as PgClient;
  const socket = client.connection.stream;
  const copy = new CopyOut(`copy (${sql}\n) to stdout`, names, parsers, batchRows * 2, socket);
  client.query(copy as never);
  let complete = false;
  try {
    for (;;) {
      if (copy.rows.length) {
        const batch = copy.rows.splice(0, batchRows);
        if (copy.paused && copy.rows.length < batchRows) {
          copy.paused = false;
          socket.resume();
        }
        yield batch;
        continue;
      }
      if (copy.failure) throw copy.failure;
      if (copy.finished) break;
      await new Promise<void>((resolve) => (copy.wake = resolve));
      copy.wake = undefined;
    }
    complete = true;
  } finally {
    if (copy.paused) socket.resume();
    // After a server error the connection recovers by itself (ReadyForQuery follows).
    if (!complete && !copy.finished && !copy.failure) destroy();
  }
}
