import { describe, expect, it } from '@jest/globals';
import { createDispatcher } from '../../lib/agent/dispatch.js';
import { buildConnectors } from '../../lib/agent/connectors.js';
import type { OperationContext } from '../../lib/connectors/types.js';
import { silentLogger } from '../../lib/log/index.js';
import { FakeClock } from '../fixtures/fake-clock.js';
import { OutpostError } from '../../lib/util/errors.js';
import { fakeConnectorKinds } from './fake-connector.js';

const clock = new FakeClock();
const connectors = buildConnectors({ r1: { kind: 'fake' } }, fakeConnectorKinds(), { log: silentLogger(), clock, readSecret: () => '' });
const dispatch = createDispatcher({ connectors, clock, agentId: 'agent-x' });
const pages: unknown[][] = [];
const ctx = (signal = new AbortController().signal): OperationContext => ({ signal, log: silentLogger(), writePage: async (r) => void pages.push([...r]) });

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(OutpostError);
    expect((err as OutpostError).retryable).toBe(false);
    return (err as OutpostError).code;
  }
  return 'resolved';
}

describe('dispatch', () => {
  it('runs ping with an abortable delay on the injected clock', async () => {
    await expect(dispatch({ type: 'ping', resource: null, payload: {} }, ctx())).resolves.toEqual({ ok: true, agentId: 'agent-x' });
    const p = dispatch({ type: 'ping', resource: null, payload: { delayMs: 5000 } }, ctx());
    await clock.advance(5000);
    await expect(p).resolves.toEqual({ ok: true, agentId: 'agent-x' });
    const c = new AbortController();
    const q = dispatch({ type: 'ping', resource: null, payload: { delayMs: 5000 } }, ctx(c.signal));
    c.abort(new OutpostError('cancelled', 'cancelled'));
    await expect(q).rejects.toMatchObject({ code: 'cancelled' });
  });

  it('routes identity and kind-specific operations to the resource connector', async () => {
    await expect(dispatch({ type: 'grant', resource: 'r1', payload: { accountId: 'a', entitlementId: 'g' } }, ctx())).resolves.toEqual({ changed: true });
    await expect(dispatch({ type: 'listAccounts', resource: 'r1', payload: { pageSize: 2 } }, ctx())).resolves.toEqual({ records: 6 });
    await expect(dispatch({ type: 'ldap.search', resource: 'r1', payload: { filter: '(x=1)' } }, ctx())).resolves.toEqual({ records: 1 });
    expect(pages.length).toBe(4);
  });

  it('fails clearly, without retry, on unknown types, resources and bad payloads', async () => {
    expect(await code(dispatch({ type: 'format.disk', resource: 'r1', payload: {} }, ctx()))).toBe('unknown_type');
    expect(await code(dispatch({ type: 'grant', resource: 'nope', payload: { accountId: 'a', entitlementId: 'g' } }, ctx()))).toBe('unknown_resource');
    expect(await code(dispatch({ type: 'grant', resource: null, payload: { accountId: 'a', entitlementId: 'g' } }, ctx()))).toBe('invalid_request');
    expect(await code(dispatch({ type: 'grant', resource: 'r1', payload: { accountId: 'a' } }, ctx()))).toBe('invalid_request');
    expect(await code(dispatch({ type: 'ping', resource: null, payload: { delayMs: -1 } }, ctx()))).toBe('invalid_request');
    expect(await code(dispatch({ type: 'sql.query', resource: 'r1', payload: { query: 'q' } }, ctx()))).toBe('unknown_type');  });

  it('names inherited from Object.prototype are unknown types, not schemas or operations', async () => {
    for (const type of ['constructor', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf']) {
      for (const resource of [null, 'r1']) {
        await expect(dispatch({ type, resource, payload: {} }, ctx())).rejects.toMatchObject({ code: 'unknown_type', retryable: false, message: `unknown job type "${type}"` });
      }
    }
  });
});
