import { describe, it, expect } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { createTestDatabase, tempDir } from '../fixtures/proxy-server.js';
import { buildDist, ROOT } from '../fixtures/processes.js';

/** The store's drivers are loaded by the dialect in use: an embedded (SQLite) proxy carries no knex and no pg. */
describe('what a proxy process loads', () => {
  it('a proxy on SQLite loads neither knex nor pg; one on PostgreSQL loads both', async () => {
    buildDist();
    const pgDb = await createTestDatabase();
    // The compiled proxy in a fresh Node process: which CommonJS packages did start() load?
    const script = `
      const { createProxyServer } = await import(${JSON.stringify(`${ROOT}dist/lib/proxy/server.js`)});
      const { loadProxyConfig } = await import(${JSON.stringify(`${ROOT}dist/lib/config/proxy.js`)});
      const { silentLogger } = await import(${JSON.stringify(`${ROOT}dist/lib/log/index.js`)});
      const { createRequire } = await import('node:module');
      const config = loadProxyConfig({ env: {}, overrides: { store: { url: process.argv[1] }, adminToken: 'loads-test-admin-0123456789', host: '127.0.0.1', port: 0 } });
      const proxy = createProxyServer(config, { log: silentLogger() });
      await proxy.start();
      const loaded = Object.keys(createRequire(import.meta.url).cache);
      await proxy.stop();
      console.log(JSON.stringify({ knex: loaded.some((f) => f.includes('/node_modules/knex/')), pg: loaded.some((f) => f.includes('/node_modules/pg/')) }));
      process.exit(0);`;
    const dir = tempDir();
    try {
      const run = (store: string) => {
        const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, store], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
        expect(r.stderr).toBe('');
        return JSON.parse(r.stdout.trim().split('\n').pop()!) as { knex: boolean; pg: boolean };
      };
      expect(run(`sqlite:${join(dir.dir, 'p.db')}`)).toEqual({ knex: false, pg: false });
      expect(run(pgDb.url)).toEqual({ knex: true, pg: true });
    } finally {
      dir.cleanup();
      await pgDb.drop();
    }
  }, 60_000);
});
