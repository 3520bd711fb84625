import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createSqlConnector } from '../../../lib/connectors/sql/index.js';
import type { Connector } from '../../../lib/connectors/types.js';
import type { AccountRecord, EntitlementRecord, GrantRecord } from '../../../lib/protocol/operations.js';
import { opContext, sqlDeps, uniquePrefix, rejection } from '../../fixtures/sql.js';

/** Principals the native suite creates on a shared server (uniquely prefixed) and drops afterwards. */
export interface NativePrincipals {
  /** Account id as the connector spells it (PostgreSQL: role name; MySQL: 'user'@'host'). */
  account: string;
  role: string;
  /** A role whose name holds a quote, a dot, a backtick, a bracket and a space. */
  oddRole: string;
}

export interface NativeTarget {
  /** `kind` and `connection` of a native-model resource. */
  resource(): Record<string, unknown>;
  create(prefix: string): Promise<NativePrincipals>;
  /** Whether a principal of this exact name exists (for the injection check). */
  exists(name: string): Promise<boolean>;
  drop(prefix: string): Promise<void>;
}


/** The native identity model against real principals. */
export function nativeSuite(kind: string, t: NativeTarget): void {
  describe(`${kind}: native model`, () => {
    const prefix = uniquePrefix();
    let c: Connector;
    let p: NativePrincipals;
    beforeAll(async () => {
      p = await t.create(prefix);
      c = createSqlConnector('native', { ...t.resource(), model: 'native' }, sqlDeps());
    }, 60_000);
    afterAll(async () => {
      await c?.close();
      await t.drop(prefix);
    }, 60_000);

    const accounts = async (): Promise<AccountRecord[]> => {
      const o = opContext();
      const res = await c.listAccounts({ pageSize: 2 }, o.ctx);
      expect(res.records).toBe(o.records.length);
      return o.records as AccountRecord[];
    };
    const grants = async (): Promise<GrantRecord[]> => {
      const o = opContext();
      await c.listGrants({}, o.ctx);
      return o.records as GrantRecord[];
    };

    it('checkResource reports the native model', async () => {
      expect((await c.checkResource({}, opContext().ctx)).details).toMatchObject({ dialect: kind, model: 'native' });
    });

    it('lists the accounts and roles it made', async () => {
      const mine = (await accounts()).find((a) => a.id === p.account);
      expect(mine).toMatchObject({ id: p.account, enabled: true, email: null });
      const o = opContext();
      await c.listEntitlements({}, o.ctx);
      const roles = o.records as EntitlementRecord[];
      expect(roles).toContainEqual(expect.objectContaining({ id: p.role, kind: 'role' }));
      expect(roles).toContainEqual(expect.objectContaining({ id: p.oddRole, kind: 'role' }));
    });

    it('grant and revoke twice: the second answers changed false', async () => {
      for (const role of [p.role, p.oddRole]) {
        const g = { accountId: p.account, entitlementId: role };
        expect(await c.grant(g, opContext().ctx)).toEqual({ changed: true });
        expect(await c.grant(g, opContext().ctx)).toEqual({ changed: false });
        expect(await grants()).toContainEqual(g);
        expect(await c.revoke(g, opContext().ctx)).toEqual({ changed: true });
        expect(await c.revoke(g, opContext().ctx)).toEqual({ changed: false });
        expect(await grants()).not.toContainEqual(g);
      }
    });

    it('setAccountEnabled twice each way', async () => {
      for (const enabled of [false, true]) {
        const s = { accountId: p.account, enabled };
        expect(await c.setAccountEnabled(s, opContext().ctx)).toEqual({ changed: true });
        expect(await c.setAccountEnabled(s, opContext().ctx)).toEqual({ changed: false });
        expect((await accounts()).find((a) => a.id === p.account)?.enabled).toBe(enabled);
      }
    });

    it('unknown principals are not_found, not retried', async () => {
      const noAccount = await rejection(c.grant({ accountId: `${prefix}_nobody`, entitlementId: p.role }, opContext().ctx));
      expect(noAccount).toMatchObject({ code: 'not_found', retryable: false });
      const noRole = await rejection(c.revoke({ accountId: p.account, entitlementId: `${prefix}_norole` }, opContext().ctx));
      expect(noRole).toMatchObject({ code: 'not_found', retryable: false });
      const noEnable = await rejection(c.setAccountEnabled({ accountId: `${prefix}_nobody`, enabled: false }, opContext().ctx));
      expect(noEnable).toMatchObject({ code: 'not_found' });
    });

    it('injection attempts in principal names change nothing', async () => {
      const evil = `${prefix}_evil`;
      const attempts = [
        `x"; create role ${evil}; --`,
        `x'; create role ${evil}; --`,
        `x\`; create role ${evil}; --`,
        `x] ; create role ${evil}; --`,
        `x /* */; create role ${evil}`,
        `'x'@'%'; create role ${evil}; -- '`,
      ];
      for (const name of attempts) {
        for (const op of [
          () => c.grant({ accountId: name, entitlementId: p.role }, opContext().ctx),
          () => c.grant({ accountId: p.account, entitlementId: name }, opContext().ctx),
          () => c.setAccountEnabled({ accountId: name, enabled: false }, opContext().ctx),
        ]) {
          const err = await rejection(op());
          expect(['not_found', 'invalid_request']).toContain(err.code);
        }
      }
      expect(await t.exists(evil)).toBe(false);
      expect(await t.exists(p.role)).toBe(true);
    });
  });
}
