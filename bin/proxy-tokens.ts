import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { ProxyConfig } from '../lib/config/proxy.js';
import { createLogger, type Logger } from '../lib/log/index.js';
import { toWireError } from '../lib/util/errors.js';
import type { ProxyServer } from '../lib/proxy/server.js';
import { parseExpiry, TOKEN_ID, TOKEN_ROLES, type TokenInfo, type TokenRole } from '../lib/proxy/store/tokens.js';

/** `integration-proxy token …`: create, list and revoke pool tokens in the configured store. */
export const TOKEN_USAGE = `  integration-proxy token create --pool NAME [--role agent|admin|viewer] [--expires 30d|ISO-8601] [--config FILE]
  integration-proxy token list [--pool NAME] [--json] [--config FILE]
  integration-proxy token revoke ID [--config FILE]`;

/** What the command needs from bin/integration-proxy. */
export interface TokenCommandDeps {
  config(file: string | undefined): ProxyConfig;
  /** Loaded only once the config is known to be valid: errors answer fast. */
  loadServer(): Promise<{ createProxyServer: (config: ProxyConfig, deps: { log: Logger }) => ProxyServer }>;
  fail(message: string, code?: number): never;
  out(text: string): void;
}

export async function tokenCommand(args: string[], deps: TokenCommandDeps): Promise<void> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'create':
      return create(rest, deps);
    case 'list':
      return list(rest, deps);
    case 'revoke':
      return revoke(rest, deps);
    default:
      deps.fail(`usage:\n${TOKEN_USAGE}`);
  }
}

/** Opens the store (migrating it if needed), runs `fn`, closes it. */
async function withStore<T>(file: string | undefined, deps: TokenCommandDeps, fn: (proxy: ProxyServer) => Promise<T>): Promise<T> {
  const cfg = deps.config(file);
  const { createProxyServer } = await deps.loadServer();
  const proxy = createProxyServer(cfg, { log: createLogger({ level: 'warn', format: cfg.log.format }) });
  let failure: unknown;
  try {
    return await fn(proxy);
  } catch (err) {
    failure = err;
  } finally {
    await proxy.stop();
  }
  return deps.fail(toWireError(failure).message, 1);
}

function parse<T extends ParseArgsConfig>(config: T, deps: TokenCommandDeps): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    // Node's message names the option, not its value.
    return deps.fail(`${(err as Error).message}\nusage:\n${TOKEN_USAGE}`);
  }
}

async function create(args: string[], deps: TokenCommandDeps): Promise<void> {
  const { values } = parse({
    args,
    strict: true,
    options: {
      pool: { type: 'string' },
      role: { type: 'string' },
      admin: { type: 'boolean', default: false },
      expires: { type: 'string' },
      config: { type: 'string' },
    },
  }, deps);
  const pool = values.pool;
  if (!pool) deps.fail('token create needs --pool NAME');
  const roleArg = values.role;
  if (roleArg !== undefined && !TOKEN_ROLES.includes(roleArg as TokenRole)) deps.fail(`--role: must be one of ${TOKEN_ROLES.join(', ')}`);
  if (values.admin && roleArg !== undefined && roleArg !== 'admin') deps.fail('--admin is --role admin; give one or the other');
  const role: TokenRole = values.admin ? 'admin' : ((roleArg as TokenRole | undefined) ?? 'agent');
  let expiresAtMs: number | null = null;
  if (values.expires !== undefined) {
    try {
      expiresAtMs = parseExpiry(values.expires, Date.now());
    } catch (err) {
      deps.fail(toWireError(err).message);
    }
  }
  const made = await withStore(values.config, deps, (p) => p.issueToken({ pool, role, expiresAtMs }));
  const expiry = expiresAtMs === null ? 'never expires' : `expires ${isoSeconds(expiresAtMs)}`;
  // The secret alone on the last line, for scripts; shown once.
  deps.out(`${role} token ${made.id} for pool ${pool} (${expiry}; shown once, only its hash is stored):\n${made.token}\n`);
}

async function list(args: string[], deps: TokenCommandDeps): Promise<void> {
  const { values } = parse({ args, strict: true, options: { pool: { type: 'string' }, json: { type: 'boolean', default: false }, config: { type: 'string' } } }, deps);
  const now = Date.now();
  const tokens = await withStore(values.config, deps, (p) => p.listTokens(values.pool === undefined ? {} : { pool: values.pool }));
  if (values.json) {
    deps.out(JSON.stringify(tokens.map((t) => view(t, now, isoMs)), null, 2) + '\n');
    return;
  }
  const head = ['ID', 'POOL', 'ROLE', 'CREATED', 'LAST USED', 'EXPIRES', 'STATUS'];
  const rows = tokens.map((t) => {
    const v = view(t, now);
    return [v.id, v.pool, v.role, v.createdAt, v.lastUsedAt ?? 'never', v.expiresAt ?? 'never', v.status];
  });
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  deps.out([line(head), ...rows.map(line)].join('\n') + '\n');
}

async function revoke(args: string[], deps: TokenCommandDeps): Promise<void> {
  const { values, positionals } = parse({ args, strict: true, allowPositionals: true, options: { config: { type: 'string' } } }, deps);
  const [id, extra] = positionals;
  // Never echoed: an operator may paste the secret here by mistake.
  if (!id || extra !== undefined) deps.fail('token revoke needs one token id (tok_…, see token list)');
  if (!TOKEN_ID.test(id)) {
    deps.fail(id.startsWith('opt_') ? 'that is a token itself, not its id: find the id with token list' : 'a token id looks like tok_ and 12 hex digits (see token list)');
  }
  const outcome = await withStore(values.config, deps, (p) => p.revokeToken(id));
  if (outcome === 'not_found') deps.fail(`no token ${id}`, 1);
  deps.out(outcome === 'revoked' ? `token ${id} revoked: every replica refuses it within a second\n` : `token ${id} was already revoked\n`);
}

/** A token as listed: ISO times and a status; never the secret or its hash (the store has no secret, and the hash is not selected). */
function view(t: TokenInfo, now: number, iso = isoSeconds) {
  const status = t.revokedAt !== null ? 'revoked' : t.expiresAt !== null && t.expiresAt <= now ? 'expired' : 'active';
  return {
    id: t.id,
    pool: t.pool,
    role: t.role,
    createdAt: iso(t.createdAt),
    lastUsedAt: t.lastUsedAt === null ? null : iso(t.lastUsedAt),
    expiresAt: t.expiresAt === null ? null : iso(t.expiresAt),
    revokedAt: t.revokedAt === null ? null : iso(t.revokedAt),
    status,
  };
}

const isoMs = (ms: number) => new Date(ms).toISOString();
const isoSeconds = (ms: number) => isoMs(ms).replace(/\.\d{3}Z$/, 'Z');
