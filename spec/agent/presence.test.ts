import { describe, expect, it } from '@jest/globals';
import { Presence } from '../../lib/agent/health.js';
import { FakeClock } from '../fixtures/fake-clock.js';

describe('Presence (what /readyz reports)', () => {
  it('is not ready before any exchange, ready within the window after one, not after it', async () => {
    const clock = new FakeClock();
    const p = new Presence(clock, 90_000);
    expect(p.ready()).toBe(false);
    p.contact();
    await clock.advance(90_000);
    expect(p.ready()).toBe(true);
    await clock.advance(1);
    expect(p.ready()).toBe(false);
  });

  it('a poll sent right after an exchange counts while it is held, however long (waitMs may exceed the window)', async () => {
    const clock = new FakeClock();
    const p = new Presence(clock, 90_000);
    p.contact();
    await clock.advance(100);
    const sentAt = clock.monotonicMs();
    await clock.advance(300_000);
    expect(p.ready(sentAt)).toBe(true);
    // Ended (no poll open): back to the window.
    expect(p.ready(undefined)).toBe(false);
    // A poll sent long after the last exchange (the proxy has been away) proves nothing.
    expect(p.ready(clock.monotonicMs())).toBe(false);
  });
});
