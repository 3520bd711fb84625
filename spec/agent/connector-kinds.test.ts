import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { CONNECTOR_LOADERS, loadConnectorKinds } from '../../lib/agent/connector-kinds.js';
import { createAgent } from '../../lib/agent/agent.js';
import { buildConnectors } from '../../lib/agent/connectors.js';
import { agentConfigDefaults, type AgentConfig } from '../../lib/config/agent.js';
import { silentLogger } from '../../lib/log/index.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { buildDist } from '../fixtures/processes.js';
import { fakeConnectorKinds } from './fake-connector.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const deps = { log: silentLogger(), clock: new FakeClock(), readSecret: () => '' };

describe('connector kinds (loaded on demand)', () => {
  it('loads the configured kinds and still names every known kind for an unknown one', async () => {
    const kinds = await loadConnectorKinds(['sqlite']);
    expect(Object.keys(kinds).sort()).toEqual(Object.keys(CONNECTOR_LOADERS).sort());
    const built = buildConnectors({ db: { kind: 'sqlite', connection: { filename: ':memory:' }, statements: { listAccounts: 'select 1 as id' } } }, kinds, deps);
    expect(built.get('db')!.kind).toBe('sqlite');
    await built.get('db')!.close();
    expect(() => buildConnectors({ dir: { kind: 'ldap' } }, kinds, deps)).toThrow(/ldap connector was not loaded/);
    expect(() => buildConnectors({ x: { kind: 'nope' } }, kinds, deps)).toThrow('unknown kind "nope" (known: ldap, mssql, mysql, postgres, sqlite)');
  });

  it('an idle agent process does not load knex, even with a SQL resource; its first operation does', () => {
    buildDist();
    // The real compiled agent in a fresh Node process: which CommonJS packages did start() load, and a first operation?
    const script = `
      const { createAgent } = await import(${JSON.stringify(`${ROOT}dist/lib/agent/agent.js`)});
      const { agentConfigDefaults } = await import(${JSON.stringify(`${ROOT}dist/lib/config/agent.js`)});
      const { createSqlConnector } = await import(${JSON.stringify(`${ROOT}dist/lib/connectors/sql/index.js`)});
      const { silentLogger } = await import(${JSON.stringify(`${ROOT}dist/lib/log/index.js`)});
      const { systemClock } = await import(${JSON.stringify(`${ROOT}dist/lib/util/clock.js`)});
      const { createRequire } = await import('node:module');
      const resources = JSON.parse(process.argv[1]);
      const knex = () => Object.keys(createRequire(import.meta.url).cache).some((f) => f.includes('/node_modules/knex/'));
      const defaults = agentConfigDefaults();
      const agent = createAgent({ ...defaults, proxy: { ...defaults.proxy, url: 'http://127.0.0.1:9', token: 'kinds-test-token-0123' },
        concurrency: 1, shutdownGraceMs: 0, health: { host: '127.0.0.1', port: 0 }, agentId: 'kinds', resources }, { log: silentLogger() });
      await agent.start();
      const atStart = knex();
      await agent.stop({ skipWait: true });
      let afterOperation = false;
      if (resources.db) {
        const c = createSqlConnector('db', resources.db, { log: silentLogger(), clock: systemClock, readSecret: () => '' });
        const ctx = { signal: new AbortController().signal, log: silentLogger(), writePage: async () => {} };
        await c.listAccounts({}, ctx);
        afterOperation = knex();
        await c.close();
      }
      console.log(JSON.stringify({ atStart, afterOperation }));
      process.exit(0);`;
    const run = (resources: unknown) => {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, JSON.stringify(resources)], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as { atStart: boolean; afterOperation: boolean };
    };
    // One process (each costs seconds): with a SQL resource configured, knex waits for the first operation.
    expect(run({ db: { kind: 'sqlite', connection: { filename: ':memory:' }, statements: { listAccounts: 'select 1 as id' } } })).toEqual({ atStart: false, afterOperation: true });
  }, 60_000);

  it('a bad resource makes start() fail with a config_error naming it, before any lease', async () => {
    const defaults = agentConfigDefaults();
    const config: AgentConfig = {
      ...defaults,
      proxy: { ...defaults.proxy, url: 'http://127.0.0.1:9', token: 'kinds-test-token-0123' },
      concurrency: 1,
      shutdownGraceMs: 0,
      health: { host: '127.0.0.1', port: 0 },
      agentId: 'kinds-bad',
      resources: { dir: { kind: 'fake', failOn: 'x' } },
    };
    const agent = createAgent(config, { log: silentLogger(), connectorKinds: fakeConnectorKinds() });
    await expect(agent.start()).rejects.toMatchObject({ code: 'config_error', message: expect.stringContaining('resources.dir.failOn') });
    expect(agent.stats().polls).toBe(0);
    await agent.stop({ skipWait: true });
    expect(agent.state).toBe('stopped');
  });
});
