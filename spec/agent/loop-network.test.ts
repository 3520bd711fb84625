import { describe, expect, it } from '@jest/globals';
import { LeaseLoop } from '../../lib/agent/loop.js';
import { silentLogger } from '../../lib/log/index.js';
import type { Backoff } from '../../lib/util/backoff.js';
import { FakeClock, flushMicrotasks } from '../fixtures/fake-clock.js';
import { OutpostError } from '../../lib/util/errors.js';
import { FakeLease, job } from './fake-lease.js';
import { captureLogger } from './harness.js';

/**
 * The lease loop's poll policy (lib/agent/poll-policy.ts) on a FakeClock:
 * idle cuts, the adapted wait, readiness hooks, Retry-After and refused
 * answers, and the outage backoff curve over ten simulated minutes.
 */
/** An error as ProxyApi throws it when the connection is reset under a call. */
function resetError(): OutpostError {
  const cause = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET', name: 'RequestError' });
  return new OutpostError('unavailable', 'the integration-proxy is unreachable (ECONNRESET: socket hang up)', { retryable: true, cause });
}

function loggedSetup(opts: { backoff?: Backoff } = {}) {
  const clock = new FakeClock();
  const api = new FakeLease();
  const { log, lines } = captureLogger();
  const loop = new LeaseLoop(
    { api, clock, log, run: () => new Promise<void>(() => undefined) },
    { agentId: 'a1', hostname: 'h', version: '0', resources: [], concurrency: 4, waitMs: 25_000, ...opts },
  );
  return { clock, api, loop, lines };
}

describe('LeaseLoop behind an idle-cutting network', () => {
  it('re-polls at once after a held poll is cut, logs it at debug and does not back off', async () => {
    const { clock, api, loop, lines } = loggedSetup();
    loop.start();
    await flushMicrotasks();
    api.answer([]); // the first, unheld poll
    await flushMicrotasks();
    await clock.advance(10_900);
    api.fail(resetError());
    await flushMicrotasks();
    expect(api.requests).toHaveLength(3);
    expect(api.requests[2]!.waitMs).toBe(25_000);
    expect(lines().filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
    expect(lines().find((l) => l.message === 'long poll cut by the network; polling again')).toMatchObject({ level: 'debug', heldMs: 10_900 });
    await loop.stop();
  });

  it('after three cuts at about the same hold, shortens waitMs below it and warns once', async () => {
    const { clock, api, loop, lines } = loggedSetup();
    loop.start();
    await flushMicrotasks();
    api.answer([]);
    await flushMicrotasks();
    for (const held of [10_900, 11_050, 10_950]) {
      await clock.advance(held);
      api.fail(resetError());
      await flushMicrotasks();
    }
    expect(loop.waitMs).toBe(8000);
    expect(api.requests.at(-1)!.waitMs).toBe(8000);
    const warns = lines().filter((l) => l.level === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]!.message).toMatch(/poll wait shortened from 25000 ms to 8000 ms/);
    expect(warns[0]!.message).toMatch(/proxy\.waitMs \(AGENT_WAIT_MS\)/);
    // Polls that now end normally at 8 s keep it so, without another warning.
    for (let i = 0; i < 3; i++) {
      await clock.advance(8000);
      api.answer([]);
      await flushMicrotasks();
    }
    expect(api.requests.at(-1)!.waitMs).toBe(8000);
    expect(lines().filter((l) => l.level === 'warn')).toHaveLength(1);
    await loop.stop();
  });

  it('cuts at scattered holds do not shorten waitMs', async () => {
    const { clock, api, loop } = loggedSetup();
    loop.start();
    await flushMicrotasks();
    api.answer([]);
    await flushMicrotasks();
    for (const held of [4000, 11_000, 20_000, 7000]) {
      await clock.advance(held);
      api.fail(resetError());
      await flushMicrotasks();
    }
    expect(loop.waitMs).toBe(25_000);
    await loop.stop();
  });

  it('a reset that comes at once (not a held poll) is a failure with backoff', async () => {
    const { clock, api, loop, lines } = loggedSetup();
    loop.start();
    await flushMicrotasks();
    api.answer([]);
    await flushMicrotasks();
    await clock.advance(300);
    api.fail(resetError());
    await flushMicrotasks();
    expect(api.requests).toHaveLength(2);
    expect(lines().find((l) => l.message === 'lease request failed')).toMatchObject({ level: 'warn', failures: 1 });
    await clock.advance(1150);
    expect(api.requests).toHaveLength(3);
    await loop.stop();
  });

  it('reports contact for a cut poll and exposes the open poll (readiness)', async () => {
    const clock = new FakeClock();
    const api = new FakeLease();
    let contacts = 0;
    const loop = new LeaseLoop(
      { api, clock, log: silentLogger(), run: async () => undefined, onContact: () => contacts++ },
      { agentId: 'a1', hostname: 'h', version: '0', resources: [], concurrency: 1, waitMs: 25_000 },
    );
    loop.start();
    await flushMicrotasks();
    expect(loop.pollOpenSinceMs).toBe(clock.monotonicMs());
    await clock.advance(5000);
    api.fail(resetError());
    await flushMicrotasks();
    expect(contacts).toBe(1);
    expect(loop.pollOpenSinceMs).toBe(5000);
    await loop.stop();
    expect(loop.pollOpenSinceMs).toBeUndefined();
  });
});

describe('LeaseLoop against a hostile or absent proxy', () => {
  it('a month of Retry-After waits at most 5 minutes, never a hot loop', async () => {
    const { clock, api, loop } = loggedSetup();
    loop.start();
    await flushMicrotasks();
    api.fail(new OutpostError('unavailable', 'busy', { retryable: true, retryAfterMs: 30 * 24 * 3600_000 }));
    await clock.advance(299_999);
    expect(api.requests).toHaveLength(1);
    await clock.advance(1);
    expect(api.requests).toHaveLength(2);
    await loop.stop();
  });

  it('backs off when every job of an answer is refused (no trading them back and forth)', async () => {
    const { clock, api, loop, lines } = loggedSetup();
    loop.start();
    await flushMicrotasks();
    api.answer([{ ...job('short'), leaseTtlMs: 5 }]);
    await flushMicrotasks();
    expect(api.released[0]!.leases.map((l) => l.jobId)).toEqual(['short']);
    expect(api.requests).toHaveLength(1);
    await clock.advance(1150);
    expect(api.requests).toHaveLength(2);
    expect(lines().some((l) => l.message === 'every job of a lease answer was refused; polling again later')).toBe(true);
    await loop.stop();
  });

  it('outage: at most one request per 10 s once backed off, and back within 11.5 s of the return', async () => {
    // The real curve (PROXY_BACKOFF) with real randomness, over a 10-minute outage on a FakeClock.
    const { clock, api, loop } = loggedSetup();
    loop.start();
    await flushMicrotasks();
    api.answer([]);
    await flushMicrotasks();
    const refused = () => new OutpostError('unavailable', 'the integration-proxy is unreachable (ECONNREFUSED)', { retryable: true });
    const sentAt: number[] = [];
    const outageMs = 600_000;
    const downAt = clock.monotonicMs();
    while (clock.monotonicMs() - downAt < outageMs) {
      if (api.open > 0) {
        sentAt.push(clock.monotonicMs());
        api.fail(refused());
      }
      // Straight to the next timer (the backoff's), in 10 ms steps only while none is armed yet:
      // ten simulated minutes in a few hundred steps instead of 60 000.
      const nextMs = clock.msToNextTimer;
      await clock.advance(nextMs === Infinity ? 10 : Math.max(1, nextMs));
    }
    const gaps = sentAt.slice(1).map((t, i) => t - sentAt[i]!);
    // 1 s, 2 s, 4 s, 8 s (each delay in [ceiling, ceiling × 1.15], + the 10 ms step), then at the cap: every gap in [10 s, 11.5 s].
    [1000, 2000, 4000, 8000].forEach((ceilingMs, i) => {
      expect(gaps[i]).toBeGreaterThanOrEqual(ceilingMs);
      expect(gaps[i]).toBeLessThanOrEqual(ceilingMs * 1.15 + 10);
    });
    const atCap = gaps.slice(4);
    expect(atCap.length).toBeGreaterThan(40);
    expect(Math.min(...atCap)).toBeGreaterThanOrEqual(10_000);
    expect(Math.max(...atCap)).toBeLessThanOrEqual(11_510);
    // Requests per 10 s window once backed off (after the first 15 s): never more than one.
    const backedOff = sentAt.filter((t) => t - downAt >= 15_000);
    for (const t of backedOff) expect(backedOff.filter((u) => u >= t && u < t + 10_000)).toHaveLength(1);
    // The proxy returns now: the next poll goes out within 11.5 s and is answered.
    const backAt = clock.monotonicMs();
    while (api.open === 0) await clock.advance(10);
    expect(clock.monotonicMs() - backAt).toBeLessThanOrEqual(11_510);
    api.answer([]);
    await clock.advance(1000); // an empty answer at once: the anti-spin pause
    expect(api.open).toBe(1);
    await loop.stop();
  });
});
