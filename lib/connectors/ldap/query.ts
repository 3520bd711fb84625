import type { Filter } from 'ldapts';
import type { CheckResult, LdapSearchPayload, ListingResult } from '../../protocol/operations.js';
import type { Clock } from '../../util/clock.js';
import { OutpostError } from '../../util/errors.js';
import type { OperationContext } from '../types.js';
import type { LdapSettings } from './config.js';
import { parseFilterStrict } from './dn.js';
import { BINARY_ATTRIBUTES, EntryView, toJsonEntry } from './entries.js';
import type { LdapPool } from './pool.js';
import { pagedSearch, payloadDN } from './search.js';

const PAGED_RESULTS_OID = '1.2.840.113556.1.4.319';
const AD_CAPABILITY_OID = '1.2.840.113556.1.4.800';

/**
 * Connects (or reuses a pooled connection, which proves the bind still
 * holds), reads the root DSE and says what the server is. Failures are
 * thrown as mapped errors (`invalid_credentials`, `tls_error`, `unavailable` …)
 * so that the job and `agent check` show why.
 */
export async function checkResource(pool: LdapPool, s: LdapSettings, clock: Clock, ctx: OperationContext): Promise<CheckResult> {
  const started = clock.now();
  const root = await pool.use(ctx.signal, 'search', async (c) => {
    const res = await c.search('', {
      scope: 'base',
      filter: '(objectClass=*)',
      attributes: ['namingContexts', 'supportedControl', 'supportedCapabilities', 'vendorName', 'vendorVersion', 'objectClass', 'defaultNamingContext', 'dnsHostName'],
    });
    return res.searchEntries[0];
  });
  const latencyMs = clock.now() - started;
  const v = root ? new EntryView(root) : undefined;
  const controls = v?.all('supportedControl') ?? [];
  const vendor =
    v?.first('vendorName') ??
    (v?.all('supportedCapabilities').includes(AD_CAPABILITY_OID) ? 'Active Directory' : undefined) ??
    (v?.all('objectClass').some((c) => c.toLowerCase() === 'openldaprootdse') ? 'OpenLDAP' : undefined);
  const details: Record<string, unknown> = { pagedResults: controls.includes(PAGED_RESULTS_OID), flavor: s.flavor };
  if (vendor) details.vendor = vendor;
  const contexts = v?.all('namingContexts') ?? [];
  if (contexts.length) details.namingContexts = contexts;
  if (v?.first('dnsHostName')) details.dnsHostName = v.first('dnsHostName');
  return { ok: true, latencyMs, details };
}

const ATTR_RE = /^(?:[A-Za-z][A-Za-z0-9-]*|\d+(?:\.\d+)*)(?:;[A-Za-z0-9=.*-]+)*$/;

function parseFilter(name: string, text: string): Filter {
  try {
    return parseFilterStrict(text);
  } catch {
    throw new OutpostError('invalid_request', `ldap ${name}: filter is not a valid LDAP filter (RFC 4515)`);
  }
}

/**
 * `ldap.search`: a paged search under the configured base. The base must lie
 * under baseDN, the filter is parsed (never spliced into anything) and may
 * only name attributes the search may return (attributes.ts), aliases are
 * not followed, and password attributes are never returned.
 */
export async function ldapSearch(pool: LdapPool, s: LdapSettings, p: LdapSearchPayload, ctx: OperationContext): Promise<ListingResult> {
  const base = p.base !== undefined ? payloadDN(s, p.base, 'base') : s.baseDN;
  const filter = parseFilter(s.name, p.filter);
  const attributes = p.attributes ?? [];
  for (const a of attributes) {
    if (a !== '*' && a !== '+' && a !== '1.1' && !ATTR_RE.test(a)) {
      throw new OutpostError('invalid_request', `ldap ${s.name}: attributes holds an invalid attribute name`);
    }
  }
  s.attributes.checkFilter(s.name, filter);
  const requested = s.attributes.requested(s.name, attributes);
  const keep = (a: string): boolean => s.attributes.mayReturn(a);
  const limit = p.sizeLimit && p.sizeLimit > 0 ? p.sizeLimit : undefined;
  let records = 0;
  await pagedSearch(
    pool,
    ctx.signal,
    {
      base,
      filter,
      scope: p.scope ?? 'sub',
      attributes: requested,
      explicitBufferAttributes: BINARY_ATTRIBUTES,
      pageSize: limit ? Math.min(s.pageSize, limit) : s.pageSize,
      ...(limit ? { sizeLimit: limit } : {}),
    },
    async (entries) => {
      const room = limit ? limit - records : entries.length;
      const page = entries.slice(0, room).map((e) => toJsonEntry(e, keep));
      if (page.length) {
        records += page.length;
        await ctx.writePage(page);
      }
      return limit && records >= limit ? 'stop' : undefined;
    },
  );
  return { records };
}
