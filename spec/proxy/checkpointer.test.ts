import { describe, it, expect, afterEach, afterAll } from '@jest/globals';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { join } from 'node:path';
import { openSqlite, type SqliteConn } from '../../lib/proxy/store/sqlite.js';
import { Checkpointer, SQLITE_AUTOCHECKPOINT_PAGES } from '../../lib/proxy/store/checkpointer.js';
import { createLogger } from '../../lib/log/index.js';
import { tempDir } from '../fixtures/proxy-server.js';
import { waitFor } from '../fixtures/net.js';

/**
 * The background checkpointer on a real SQLite file: a worker thread copies
 * the WAL into the database while the proxy's connection only writes; the
 * connection checkpoints by itself again when the worker stops or fails.
 */
describe('Checkpointer', () => {
  const tmp = tempDir();
  let conn: SqliteConn | undefined;
  let cp: Checkpointer | undefined;
  afterEach(async () => {
    await cp?.stop();
    conn?.close();
  });
  afterAll(() => tmp.cleanup());
  const lines: Array<{ level: string; message: string }> = [];
  const stream = new PassThrough();
  stream.on('data', (b: Buffer) => {
    for (const l of b.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as { level: string; message: string });
  });
  const log = createLogger({ stream, level: 'info' });
  const autoCheckpoint = (c: SqliteConn) => c.all<{ wal_autocheckpoint: number }>('PRAGMA wal_autocheckpoint')[0]!.wal_autocheckpoint;

  /** ~1 600 WAL pages (4 KiB rows, 40 transactions): past SQLite's default of 1 000, below the backstop. */
  function write(c: SqliteConn): void {
    c.exec('CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v BLOB)');
    for (let i = 0; i < 40; i++) c.transaction(() => { for (let j = 0; j < 40; j++) c.all('INSERT INTO t (v) VALUES (randomblob(4000))'); });
  }

  it('copies the WAL into the database file while the connection only writes; stop() restores SQLite\'s default', async () => {
    const file = join(tmp.dir, 'a.db');
    conn = openSqlite('sqlite:' + file);
    cp = new Checkpointer({ intervalMs: 20 }, { conn, log });
    cp.start();
    expect(autoCheckpoint(conn)).toBe(10_000);
    const before = statSync(file).size;
    write(conn);
    // The proxy's connection did not checkpoint (backstop 10 000 pages): whatever reached the file, the worker copied.
    await waitFor(() => statSync(file).size > before + 4_000_000, 5000);
    await cp.stop();
    expect(cp.state).toBe('stopped');
    expect(autoCheckpoint(conn)).toBe(SQLITE_AUTOCHECKPOINT_PAGES);
    await cp.stop();
  });

  it('without it, the same writes stay in the WAL until a commit crosses the backstop (control)', () => {
    const file = join(tmp.dir, 'b.db');
    conn = openSqlite('sqlite:' + file);
    conn.autoCheckpoint(10_000);
    const before = statSync(file).size;
    write(conn);
    expect(statSync(file).size).toBe(before);
    expect(statSync(file + '-wal').size).toBeGreaterThan(4_000_000);
  });

  it('a worker that cannot open the file is logged, and the connection checkpoints on its own again', async () => {
    const dir = join(tmp.dir, 'not-a-file.db');
    mkdirSync(dir);
    conn = openSqlite('sqlite:' + join(tmp.dir, 'c.db'));
    // The worker opens `file`; a directory there fails its open.
    Object.defineProperty(conn, 'file', { value: dir });
    cp = new Checkpointer({ intervalMs: 20 }, { conn, log });
    cp.start();
    await waitFor(() => autoCheckpoint(conn!) === SQLITE_AUTOCHECKPOINT_PAGES, 5000);
    expect(lines.some((l) => l.level === 'warn' && /checkpoint worker failed/.test(l.message))).toBe(true);
    expect(existsSync(dir)).toBe(true);
  });
});
