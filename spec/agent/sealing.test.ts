import { describe, expect, it } from '@jest/globals';
import { createDispatcher } from '../../lib/agent/dispatch.js';
import { generateKeyPair, SecretOpener, sealSecret } from '../../lib/agent/secrets.js';
import type { Connector, OperationContext } from '../../lib/connectors/types.js';
import { systemClock } from '../../lib/util/clock.js';
import { OutpostError } from '../../lib/util/errors.js';
import { jobSecretCount, redact } from '../../lib/util/redact.js';

/** Unit tests of sealed secrets: pure logic (libsodium, the dispatcher's secret table), no I/O. */

const PLAIN = 'Tr0ub4dor&3-horse-staple';

async function refusal(p: Promise<unknown>): Promise<OutpostError> {
  try {
    await p;
  } catch (err) {
    return err as OutpostError;
  }
  throw new Error('expected a refusal');
}

describe('seal / open', () => {
  it('round-trips a secret sealed with the pool key', async () => {
    const kp = await generateKeyPair();
    const sealed = await sealSecret(PLAIN, kp.publicKey);
    expect(sealed).not.toContain(PLAIN);
    expect(Buffer.from(sealed, 'base64').length).toBe(Buffer.byteLength(PLAIN) + 48);
    expect(await new SecretOpener(kp.privateKey).open(sealed, 'password')).toBe(PLAIN);
    // Sealed boxes are randomised: the same secret twice gives two boxes.
    expect(await sealSecret(PLAIN, kp.publicKey)).not.toBe(sealed);
    // Non-ASCII survives.
    expect(await new SecretOpener(kp.privateKey).open(await sealSecret('pässwörd-日本', kp.publicKey), 'password')).toBe('pässwörd-日本');
  });

  it('refuses a box sealed for another key, a mangled box and garbage, without echoing them', async () => {
    const mine = await generateKeyPair();
    const other = await generateKeyPair();
    const opener = new SecretOpener(mine.privateKey);
    const foreign = await sealSecret(PLAIN, other.publicKey);
    const good = await sealSecret(PLAIN, mine.publicKey);
    const flipped = Buffer.from(good, 'base64');
    flipped[flipped.length - 1]! ^= 1;
    for (const box of [foreign, flipped.toString('base64'), 'AAAA', 'not base64 at all!']) {
      const err = await refusal(opener.open(box, 'password'));
      expect(err).toBeInstanceOf(OutpostError);
      expect(err.code).toBe('invalid_request');
      expect(err.retryable).toBe(false);
      expect(err.message).toBe("password: the sealed value does not open with this pool's key");
    }
  });

  it('refuses a sealed value when the agent has no key, and a malformed key clearly', async () => {
    const kp = await generateKeyPair();
    const sealed = await sealSecret(PLAIN, kp.publicKey);
    expect((await refusal(new SecretOpener(null).open(sealed, 'password'))).message).toMatch(/no sealing key \(sealing.privateKeyFile\)/);
    const bad = await refusal(new SecretOpener('c2hvcnQ=').open(sealed, 'password'));
    expect(bad.code).toBe('config_error');
    expect(bad.message).not.toContain('c2hvcnQ=');
  });

  it('refuses to seal for a malformed public key', async () => {
    expect((await refusal(sealSecret(PLAIN, 'AAAA'))).message).toMatch(/publicKey: must be a base64 X25519 public key/);
  });
});

/** A connector with setPassword/createAccount that records what it received. */
function recorder(behaviour: { throwWith?: (pw: string) => Error; echo?: boolean } = {}) {
  const seen: unknown[] = [];
  const redactedDuringJob: string[] = [];
  const op = async (payload: { password?: string }, _ctx: OperationContext) => {
    seen.push(payload);
    if (payload.password) redactedDuringJob.push(redact(`driver said ${payload.password}`));
    if (behaviour.throwWith && payload.password) throw behaviour.throwWith(payload.password);
    return behaviour.echo ? { changed: true, note: `set to ${payload.password}` } : { changed: true };
  };
  const connector = {
    kind: 'rec',
    setPassword: op,
    createAccount: async (p: { password?: string }, ctx: OperationContext) => ({ ...(await op(p, ctx)), accountId: 'u1' }),
    extra: {},
  } as unknown as Connector;
  return { connector, seen, redactedDuringJob };
}

const ctx = { signal: new AbortController().signal, log: undefined as never, writePage: async () => {} } as OperationContext;

describe('the dispatcher opens secret fields', () => {
  it('hands the connector the plaintext of a sealed password, redacts it in logs during the job only', async () => {
    const kp = await generateKeyPair();
    const rec = recorder();
    const dispatch = createDispatcher({ connectors: new Map([['db', rec.connector]]), clock: systemClock, agentId: 'a1', opener: new SecretOpener(kp.privateKey) });
    const sealed = await sealSecret(PLAIN, kp.publicKey);
    const result = await dispatch({ type: 'setPassword', resource: 'db', payload: { accountId: 'alice', password: { sealed } } }, ctx);
    expect(result).toEqual({ changed: true });
    expect(rec.seen).toEqual([{ accountId: 'alice', password: PLAIN }]);
    expect(rec.redactedDuringJob).toEqual(['driver said [REDACTED]']);
    // Released when the job ended: the registry holds only jobs in flight, however many ran.
    for (let i = 0; i < 50; i++) {
      await dispatch({ type: 'setPassword', resource: 'db', payload: { accountId: `u${i}`, password: { sealed: await sealSecret(`pw-${i}-xyz`, kp.publicKey) } } }, ctx);
    }
    expect(jobSecretCount()).toBe(0);
    // createAccount without a password needs nothing opened.
    await dispatch({ type: 'createAccount', resource: 'db', payload: { account: { name: 'bob' } } }, ctx);
    expect(rec.seen.at(-1)).toEqual({ account: { name: 'bob' } });
  });

  it('refuses a plain-string password unless the resource allows it', async () => {
    const kp = await generateKeyPair();
    const strict = recorder();
    const dispatch = createDispatcher({ connectors: new Map([['db', strict.connector]]), clock: systemClock, agentId: 'a1', opener: new SecretOpener(kp.privateKey) });
    for (const job of [
      { type: 'setPassword', resource: 'db', payload: { accountId: 'alice', password: PLAIN } },
      { type: 'createAccount', resource: 'db', payload: { account: { name: 'alice' }, password: PLAIN } },
    ]) {
      const err = await refusal(dispatch(job, ctx));
      expect(err.code).toBe('invalid_request');
      expect(err.retryable).toBe(false);
      expect(err.message).toMatch(/^password: a plain-string secret is refused; .*allowUnsealedSecrets on resource "db"/);
      expect(err.message).not.toContain(PLAIN);
    }
    expect(strict.seen).toEqual([]);

    const lax = recorder();
    const allowing = createDispatcher({ connectors: new Map([['db', lax.connector]]), clock: systemClock, agentId: 'a1', unsealedAllowed: new Set(['db']) });
    await allowing({ type: 'setPassword', resource: 'db', payload: { accountId: 'alice', password: PLAIN } }, ctx);
    expect(lax.seen).toEqual([{ accountId: 'alice', password: PLAIN }]);
  });

  it('refuses a box for another key before the connector runs; never echoes it', async () => {
    const mine = await generateKeyPair();
    const other = await generateKeyPair();
    const rec = recorder();
    const dispatch = createDispatcher({ connectors: new Map([['db', rec.connector]]), clock: systemClock, agentId: 'a1', opener: new SecretOpener(mine.privateKey) });
    const sealed = await sealSecret(PLAIN, other.publicKey);
    const err = await refusal(dispatch({ type: 'setPassword', resource: 'db', payload: { accountId: 'alice', password: { sealed } } }, ctx));
    expect([err.code, err.retryable, err.message]).toEqual(['invalid_request', false, "password: the sealed value does not open with this pool's key"]);
    expect(rec.seen).toEqual([]);
  });

  it("strips the job's own secret from a connector error and withholds a result that carries it", async () => {
    const kp = await generateKeyPair();
    const sealed = await sealSecret(PLAIN, kp.publicKey);
    const job = { type: 'setPassword', resource: 'db', payload: { accountId: 'alice', password: { sealed } } };
    const throwing = recorder({ throwWith: (pw) => new OutpostError('unavailable', `ALTER ROLE failed near '${pw}'`, { retryable: true }) });
    const d1 = createDispatcher({ connectors: new Map([['db', throwing.connector]]), clock: systemClock, agentId: 'a1', opener: new SecretOpener(kp.privateKey) });
    const e1 = await refusal(d1(job, ctx));
    expect([e1.code, e1.retryable, e1.message]).toEqual(['unavailable', true, "ALTER ROLE failed near '[REDACTED]'"]);
    const echoing = recorder({ echo: true });
    const d2 = createDispatcher({ connectors: new Map([['db', echoing.connector]]), clock: systemClock, agentId: 'a1', opener: new SecretOpener(kp.privateKey) });
    const e2 = await refusal(d2(job, ctx));
    expect(e2.code).toBe('internal');
    expect(e2.message).not.toContain(PLAIN);
    expect(jobSecretCount()).toBe(0);
  });
});

describe('agent config: the sealing key and allowUnsealedSecrets', () => {
  it('reads sealing.privateKeyFile, registers the key for redaction, names the key on errors', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { loadAgentConfig } = await import('../../lib/config/agent.js');
    const { buildConnectors } = await import('../../lib/agent/connectors.js');
    const dir = mkdtempSync(join(tmpdir(), 'outpost-sealing-'));
    try {
      const kp = await generateKeyPair();
      writeFileSync(join(dir, 'key'), `${kp.privateKey}\n`);
      const env = { AGENT_PROXY_URL: 'https://p.example', AGENT_TOKEN: 'token-0123456789abcdef', AGENT_SEALING_KEY_FILE: join(dir, 'key') };
      const c = loadAgentConfig({ env });
      expect(c.sealing).toEqual({ privateKeyFile: join(dir, 'key'), privateKey: kp.privateKey });
      expect(redact(`key is ${kp.privateKey}`)).toBe('key is [REDACTED]');
      expect(loadAgentConfig({ env: { ...env, AGENT_SEALING_KEY_FILE: '' } }).sealing).toEqual({ privateKeyFile: null, privateKey: null });
      let err: unknown;
      try {
        loadAgentConfig({ env: { ...env, AGENT_SEALING_KEY_FILE: join(dir, 'missing') } });
      } catch (e) {
        err = e;
      }
      expect((err as OutpostError).code).toBe('config_error');
      expect((err as OutpostError).message).toMatch(/sealing.privateKeyFile/);
      err = undefined;
      try {
        loadAgentConfig({ env: { ...env, AGENT_RESOURCES: JSON.stringify({ db: { kind: 'x', allowUnsealedSecrets: 'yes' } }) } });
      } catch (e) {
        err = e;
      }
      expect((err as OutpostError).message).toMatch(/resources.db.allowUnsealedSecrets: must be a boolean/);
      // The flag is the dispatcher's: a connector's strict config never sees it.
      const seen: Array<Record<string, unknown>> = [];
      buildConnectors({ db: { kind: 'strict', allowUnsealedSecrets: true, url: 'x' } }, { strict: (_n, cfg) => (seen.push(cfg), {} as Connector) }, {} as never);
      expect(seen).toEqual([{ kind: 'strict', url: 'x' }]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
