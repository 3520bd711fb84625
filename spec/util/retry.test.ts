import { describe, expect, it } from '@jest/globals';
import { Backoff } from '../../lib/util/backoff.js';
import { OutpostError } from '../../lib/util/errors.js';
import { retry } from '../../lib/util/retry.js';
import { FakeClock } from '../fixtures/fake-clock.js';

const down = () => new OutpostError('unavailable', 'connection refused', { retryable: true });
/** Full jitter drawn at 0.5: delays of 50, 100, 200 … ms for base 100 ms. */
const halfBackoff = () => new Backoff({ baseMs: 100, capMs: 1000 }, () => 0.5);

/** Records when each attempt ran, failing the first `failures` of them with `error()`. */
function scripted(clock: FakeClock, failures: number, error: () => unknown = down) {
  const at: number[] = [];
  const fn = async (attempt: number) => {
    at.push(clock.monotonicMs());
    if (attempt <= failures) throw error();
    return `ok after ${attempt}`;
  };
  return { at, fn };
}

describe('retry', () => {
  it('waits out the backoff between failures on the clock, then resolves', async () => {
    const clock = new FakeClock();
    const { at, fn } = scripted(clock, 3);
    const retries: Array<[string, number, number]> = [];
    const done = retry(fn, { clock, backoff: halfBackoff(), onRetry: (e, delayMs, attempt) => retries.push([e.code, delayMs, attempt]) });
    await clock.advance(1000);
    await expect(done).resolves.toBe('ok after 4');
    expect(at).toEqual([0, 50, 150, 350]);
    expect(retries).toEqual([
      ['unavailable', 50, 1],
      ['unavailable', 100, 2],
      ['unavailable', 200, 3],
    ]);
    expect(clock.pending).toBe(0);
  });

  it('resets a shared backoff after a success', async () => {
    const clock = new FakeClock();
    const backoff = halfBackoff();
    const first = scripted(clock, 2);
    const a = retry(first.fn, { clock, backoff });
    await clock.advance(1000);
    await a;
    expect(backoff.attempts).toBe(0);
  });

  it('does not retry what is not retryable by default, and rejects with the error itself', async () => {
    const clock = new FakeClock();
    const refused = new OutpostError('invalid_request', 'bad page');
    const { at, fn } = scripted(clock, 5, () => refused);
    await expect(retry(fn, { clock, backoff: halfBackoff() })).rejects.toBe(refused);
    expect(at).toEqual([0]);
  });

  it('asks shouldRetry with the error as an OutpostError (unknown errors coerced, their text kept out)', async () => {
    const clock = new FakeClock();
    const seen: string[] = [];
    const raw = new TypeError('postgres://user:secret@db/x is bad');
    const { at, fn } = scripted(clock, 1, () => raw);
    const done = retry(fn, {
      clock,
      backoff: halfBackoff(),
      shouldRetry: (e) => {
        seen.push(`${e.code}: ${e.message}`);
        return true;
      },
    });
    await clock.advance(100);
    await expect(done).resolves.toBe('ok after 2');
    expect(seen).toEqual(['internal: internal error (TypeError)']);
    expect(at).toEqual([0, 50]);
  });

  it('honours Retry-After when it is longer than the backoff, clamped by maxDelayMs', async () => {
    const clock = new FakeClock();
    const { at, fn } = scripted(clock, 2, () => new OutpostError('rate_limited', 'slow down', { retryable: true, retryAfterMs: 700 }));
    const done = retry(fn, { clock, backoff: halfBackoff() });
    await clock.advance(2000);
    await done;
    expect(at).toEqual([0, 700, 1400]);

    const clock2 = new FakeClock();
    const huge = scripted(clock2, 1, () => new OutpostError('rate_limited', 'slow down', { retryable: true, retryAfterMs: 3_000_000_000 }));
    const capped = retry(huge.fn, { clock: clock2, backoff: halfBackoff(), maxDelayMs: 250 });
    await clock2.advance(300);
    await capped;
    expect(huge.at).toEqual([0, 250]);
  });

  it('stops at maxAttempts with the last error', async () => {
    const clock = new FakeClock();
    const { at, fn } = scripted(clock, 10);
    const done = retry(fn, { clock, backoff: halfBackoff(), maxAttempts: 3 });
    const settled = done.catch((e: unknown) => e);
    await clock.advance(1000);
    expect(((await settled) as OutpostError).code).toBe('unavailable');
    expect(at).toEqual([0, 50, 150]);
  });

  it('gives up when the next attempt could not start before the deadline', async () => {
    const clock = new FakeClock();
    const { at, fn } = scripted(clock, 10);
    const done = retry(fn, { clock, backoff: halfBackoff(), deadlineMs: 300 });
    const settled = done.catch((e: unknown) => e);
    await clock.advance(1000);
    expect(((await settled) as OutpostError).code).toBe('unavailable');
    // 0, 50, 150; the next wait (200 ms) would end at 350, past the deadline.
    expect(at).toEqual([0, 50, 150]);
    expect(clock.pending).toBe(0);
  });

  it('an abort during a wait rejects with the signal reason and leaves no timer', async () => {
    const clock = new FakeClock();
    const controller = new AbortController();
    const { at, fn } = scripted(clock, 10);
    const done = retry(fn, { clock, backoff: halfBackoff(), signal: controller.signal });
    const settled = done.catch((e: unknown) => e);
    await clock.advance(60);
    const reason = new OutpostError('aborted', 'stopping', { retryable: true });
    controller.abort(reason);
    expect(await settled).toBe(reason);
    expect(at).toEqual([0, 50]);
    expect(clock.pending).toBe(0);
  });

  it('a failure once the signal has aborted is not retried, and no attempt starts after an abort', async () => {
    const clock = new FakeClock();
    const controller = new AbortController();
    const failure = down();
    let calls = 0;
    const done = retry(
      async () => {
        calls++;
        controller.abort();
        throw failure;
      },
      { clock, backoff: halfBackoff(), signal: controller.signal },
    );
    await expect(done).rejects.toBe(failure);
    await expect(retry(async () => calls++, { clock, signal: controller.signal })).rejects.toBeDefined();
    expect(calls).toBe(1);
  });
});
