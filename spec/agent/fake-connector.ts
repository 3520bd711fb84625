import type { Connector, ConnectorFactory, OperationContext } from '../../lib/connectors/types.js';
import type { GrantPayload, ListAccountsPayload } from '../../lib/protocol/operations.js';
import { OutpostError } from '../../lib/util/errors.js';

/** What the fake connector saw, for assertions. */
export interface FakeState {
  /** Abort reasons (codes) of operations that were aborted, by accountId. */
  aborted: Map<string, string>;
  /** Operations that started, by accountId. */
  started: Set<string>;
  /** Passwords read through deps.readSecret, by resource name. */
  passwords: Map<string, string>;
}

/** Waits until `signal` aborts; records why. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/**
 * A connector for component tests of the agent (no real directory): kind
 * `fake`. `grant` with accountId `slow` runs until aborted; `boom` throws an
 * error quoting the resource password; `leak` returns the password in its
 * result. `listAccounts` writes `pages` pages of `pageSize` records.
 * Config keys: `kind`, `passwordFile`, `pages`, `failOn` (to test validation), `down` (checkResource fails).
 */
export function fakeConnectorKinds(state: FakeState = { aborted: new Map(), started: new Set(), passwords: new Map() }): Record<string, ConnectorFactory> {
  const factory: ConnectorFactory = (name, config, deps) => {
    for (const key of Object.keys(config)) {
      if (!['kind', 'passwordFile', 'pages', 'failOn', 'down'].includes(key)) throw new OutpostError('config_error', `resources.${name}.${key}: unknown key`);
    }
    if (config.failOn !== undefined) throw new OutpostError('config_error', `resources.${name}.failOn: must not be set`);
    const password = typeof config.passwordFile === 'string' ? deps.readSecret(config.passwordFile) : 'no-password';
    state.passwords.set(name, password);
    const pages = typeof config.pages === 'number' ? config.pages : 3;
    const change = async (p: GrantPayload, ctx: OperationContext) => {
      state.started.add(p.accountId);
      ctx.log.info('fake change', { accountId: p.accountId });
      if (p.accountId === 'slow') {
        try {
          await untilAborted(ctx.signal);
        } catch (err) {
          state.aborted.set(p.accountId, (err as OutpostError).code ?? 'unknown');
          throw err;
        }
      }
      if (p.accountId === 'boom') throw new Error(`connect failed for svc with password ${password}`);
      if (p.accountId === 'leak') return { changed: true, note: `password is ${password}` } as { changed: boolean };
      return { changed: true };
    };
    const connector: Connector = {
      kind: 'fake',
      async checkResource() {
        if (config.down === true) throw new OutpostError('unreachable', `cannot reach ${name}`, { retryable: true });
        return { ok: true, latencyMs: 1, details: { name } };
      },
      async listAccounts(p: ListAccountsPayload, ctx) {
        const size = p.pageSize ?? 2;
        let n = 0;
        for (let page = 0; page < pages; page++) {
          const records = Array.from({ length: size }, () => ({ id: `u${n}`, uid: null, name: `user ${n++}`, email: null, enabled: true, attributes: {} }));
          await ctx.writePage(records);
        }
        return { records: n };
      },
      async listEntitlements() {
        return { records: 0 };
      },
      async listGrants() {
        return { records: 0 };
      },
      grant: change,
      revoke: change,
      async setAccountEnabled() {
        return { changed: false };
      },
      extra: {
        'ldap.search': async (_p: unknown, ctx: OperationContext) => {
          await ctx.writePage([{ dn: 'cn=x' }]);
          return { records: 1 };
        },
      },
      async close() {},
    };
    return connector;
  };
  return { fake: factory };
}
