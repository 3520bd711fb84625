import { afterAll, describe, expect, it } from '@jest/globals';
import { createDispatcher } from '../../lib/agent/dispatch.js';
import { scrub, scrubbedConstant } from '../../lib/agent/scrub.js';
import type { OperationContext } from '../../lib/connectors/types.js';
import { silentLogger } from '../../lib/log/index.js';
import { FakeClock } from '../../lib/util/clock.js';
import { clearSecretsForTest, registerSecret } from '../../lib/util/redact.js';

const SECRET = 'scrub-test-secret-7f3a91';
afterAll(() => clearSecretsForTest());

describe('scrub', () => {
  it('removes registered secrets and credential pairs from any result; leaves clean ones as they are', () => {
    registerSecret(SECRET);
    const clean = { rows: [{ id: 1, name: 'ann' }] };
    expect(scrub(clean)).toBe(clean);
    expect(scrub(undefined)).toBeNull();
    const dirty = scrub({ note: `connect with ${SECRET}`, url: 'postgres://svc:hunter2@db/hr' });
    expect(JSON.stringify(dirty)).not.toContain(SECRET);
    expect(JSON.stringify(dirty)).not.toContain('hunter2');
  });

  it('a scrubbed constant is checked once, frozen, and passed through afterwards', () => {
    const pong = scrubbedConstant({ ok: true, agentId: 'agent-1' });
    expect(Object.isFrozen(pong)).toBe(true);
    expect(scrub(pong)).toBe(pong);
    // A constant that needed redaction comes back redacted (and is scrubbed again each time).
    registerSecret(SECRET);
    const leaky = scrubbedConstant({ ok: true, agentId: `agent-${SECRET}` });
    expect(JSON.stringify(leaky)).not.toContain(SECRET);
    expect(JSON.stringify(scrub(leaky))).not.toContain(SECRET);
  });

  it("ping's answer never carries a secret, even one registered after the dispatcher was made", async () => {
    const dispatch = createDispatcher({ connectors: new Map(), clock: new FakeClock(), agentId: 'agent-late-secret-0a9b8c' });
    registerSecret('late-secret-0a9b8c');
    const ctx: OperationContext = { signal: new AbortController().signal, log: silentLogger(), writePage: async () => {} };
    const first = await dispatch({ type: 'ping', resource: null, payload: {} }, ctx);
    expect(JSON.stringify(scrub(first))).not.toContain('late-secret-0a9b8c');
    const second = await dispatch({ type: 'ping', resource: null, payload: {} }, ctx);
    expect(second).toEqual(first);
  });
});
