import { describe, it, expect, afterAll } from '@jest/globals';
import { join } from 'node:path';
import { openSqlite } from '../../lib/proxy/store/sqlite.js';
import { tempDir } from '../fixtures/proxy-server.js';

/**
 * Two connections on one SQLite file, as a CLI `token create` beside a
 * running proxy: a transaction that reads and then writes holds the write
 * lock from its start, so another connection's commit can never come in
 * between and fail it (a deferred transaction got SQLITE_BUSY there, which
 * no busy timeout retries).
 */
describe('SqliteConn transactions', () => {
  const tmp = tempDir();
  afterAll(() => tmp.cleanup());

  it('a transaction that reads, then writes, is not failed by another connection writing in between', () => {
    const file = 'sqlite:' + join(tmp.dir, 'two.db');
    const cli = openSqlite(file);
    const proxy = openSqlite(file);
    try {
      cli.exec('CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)');
      // The other writer gives up at once instead of waiting out the 5 s busy timeout.
      proxy.all('PRAGMA busy_timeout = 0');
      let otherWrite: unknown;
      cli.transaction(() => {
        cli.all('SELECT count(*) FROM t');
        try {
          proxy.all("INSERT INTO t (v) VALUES ('proxy')");
        } catch (err) {
          otherWrite = err;
        }
        cli.all("INSERT INTO t (v) VALUES ('cli')");
      });
      // The first transaction committed; the writer that came second was the one told to wait.
      expect((otherWrite as { code?: string } | undefined)?.code).toMatch(/^SQLITE_BUSY/);
      expect(cli.all<{ v: string }>('SELECT v FROM t')).toEqual([{ v: 'cli' }]);
    } finally {
      proxy.close();
      cli.close();
    }
  });
});
