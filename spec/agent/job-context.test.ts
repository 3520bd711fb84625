import { describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { JobContext, type JobContextShared } from '../../lib/agent/job-context.js';
import { Lease } from '../../lib/agent/lease.js';
import type { OutputApi } from '../../lib/agent/output-pipe.js';
import { silentLogger, type Logger } from '../../lib/log/index.js';
import type { LeasedJob, OutputRequest } from '../../lib/protocol/schemas.js';
import { FakeClock } from '../fixtures/fake-clock.js';

const ROOT = resolve(import.meta.dirname, '../..');

function job(id: string): LeasedJob {
  return { id, type: 'ldap.search', resource: 'dir', payload: {}, attempt: 2, leaseToken: `tok-${id}-0123456789abcdef`, leaseTtlMs: 30_000, timeoutMs: 300_000 };
}

function setup(api?: OutputApi) {
  const clock = new FakeClock();
  const children: Array<Record<string, unknown>> = [];
  const base = silentLogger();
  // The silent logger, recording the fields each child logger is made with.
  const log: Logger = Object.assign(Object.create(base) as Logger, { child: (meta: Record<string, unknown>) => (children.push(meta), base.child(meta)) });
  const pages: unknown[][] = [];
  const shared: JobContextShared = {
    api: api ?? { output: async (_id: string, body: OutputRequest) => (pages.push(body.records), { status: 'accepted' as const }) },
    clock,
    log,
    form: { ndjson: false },
    pipe: {},
  };
  const make = (id: string) => {
    const lease = new Lease(job(id), clock.monotonicMs(), clock);
    return { lease, ctx: new JobContext(shared, job(id), lease) };
  };
  return { make, children, pages };
}

describe('JobContext (a job\'s OperationContext)', () => {
  it('keeps signal and log on its prototype: no accessor is defined per job', () => {
    const { make } = setup();
    const a = make('a').ctx;
    const b = make('b').ctx;
    // An accessor defined on each instance put the context in V8's dictionary mode and made every
    // job's objects survive into the old generation (job-context.ts says what was measured).
    for (const name of ['signal', 'log']) {
      expect(Object.getOwnPropertyDescriptor(a, name)).toBeUndefined();
      expect(typeof Object.getOwnPropertyDescriptor(JobContext.prototype, name)?.get).toBe('function');
    }
    expect(Object.keys(a)).toEqual(Object.keys(b));
  });

  it('has fast properties and one hidden class for every job in V8 (the built module, node --allow-natives-syntax)', () => {
    const built = join(ROOT, 'dist/lib/agent/job-context.js');
    expect(existsSync(built)).toBe(true); // `npm run build` first (npm test does)
    // The control: an object literal with getters, as the context was, is in dictionary mode.
    const script = `
      const { JobContext } = await import(${JSON.stringify(built)});
      const a = new JobContext({}, { id: 'a' }, {}), b = new JobContext({}, { id: 'b' }, {});
      const literal = { get signal() { return 1; } };
      console.log(JSON.stringify([%HasFastProperties(a), %HaveSameMap(a, b), %HasFastProperties(literal)]));`;
    const r = spawnSync(process.execPath, ['--allow-natives-syntax', '--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([true, true, false]);
  });

  it('gives the lease\'s signal, which a stop aborts', () => {
    const { make } = setup();
    const { ctx, lease } = make('a');
    expect(ctx.signal.aborted).toBe(false);
    lease.stop('cancelled');
    expect(ctx.signal.aborted).toBe(true);
    expect((ctx.signal.reason as { code?: string }).code).toBe('cancelled');
  });

  it('makes the child logger on first use, once, with the job\'s fields', () => {
    const { make, children } = setup();
    const { ctx } = make('a');
    expect(children).toEqual([]);
    expect(ctx.log).toBe(ctx.log);
    expect(children).toEqual([{ jobId: 'a', type: 'ldap.search', resource: 'dir', attempt: 2 }]);
  });

  it('sends pages through writePage even unbound; settle and flush wait for them, and are undefined when none was written', async () => {
    const { make, pages } = setup();
    const quiet = make('q').ctx;
    expect(quiet.settle()).toBeUndefined();
    expect(quiet.flush()).toBeUndefined();
    const { ctx } = make('a');
    const write = ctx.writePage;
    await write([{ n: 1 }]);
    await write([{ n: 2 }]);
    await ctx.settle();
    await ctx.flush();
    expect(pages).toEqual([[{ n: 1 }], [{ n: 2 }]]);
  });
});
