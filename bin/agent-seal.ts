import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { OutpostError } from '../lib/util/errors.js';
import { generateKeyPair, MAX_SECRET_CHARS, sealSecret } from '../lib/agent/secrets.js';

/**
 * `agent keygen` and `agent seal`: the pool's sealing key pair and sealed
 * secrets from a shell (issue 12, secrets in payloads). libsodium does the
 * crypto (lib/agent/secrets.ts). The secret to seal is read from stdin, never
 * from argv (argv is visible in `ps` and shell history).
 */
export const SEAL_USAGE = `  keygen --out FILE [--force]                  new pool sealing key pair: private key to FILE (0600), public key on stdout
  seal --public-key B64                        read a secret from stdin, print {"sealed":"…"}
  seal --proxy URL --pool P                    the same with the pool's key from GET /v1/pools/P/key (token in OUTPOST_TOKEN)`;

/** How long `seal --proxy` waits for the key. */
const FETCH_TIMEOUT_MS = 10_000;

export interface SealCommandDeps {
  fail(message: string, code?: number): never;
  out(text: string): void;
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
}

export async function sealCommand(command: 'keygen' | 'seal', args: string[], deps: SealCommandDeps): Promise<void> {
  try {
    if (command === 'keygen') await keygen(args, deps);
    else await seal(args, deps);
  } catch (err) {
    if (err instanceof OutpostError) deps.fail(err.message, err.code === 'invalid_request' ? 64 : 1);
    throw err;
  }
}

function parse<T extends Record<string, { type: 'string' | 'boolean' }>>(args: string[], options: T, deps: SealCommandDeps) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values as { [K in keyof T]?: T[K]['type'] extends 'string' ? string : boolean };
  } catch (err) {
    // Node's message names the option, not its value.
    return deps.fail(`${(err as Error).message}\nusage:\n${SEAL_USAGE}`, 64);
  }
}

async function keygen(args: string[], deps: SealCommandDeps): Promise<void> {
  const v = parse(args, { out: { type: 'string' }, force: { type: 'boolean' } }, deps);
  if (!v.out) deps.fail(`keygen: --out FILE is required (the private key never goes to stdout)\nusage:\n${SEAL_USAGE}`, 64);
  const { publicKey, privateKey } = await generateKeyPair();
  try {
    // 0600 from the first byte (mode applies on creation); `wx` refuses to overwrite a key unless --force.
    writeFileSync(v.out, `${privateKey}\n`, { mode: 0o600, flag: v.force ? 'w' : 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    deps.fail(code === 'EEXIST' ? `keygen: ${v.out} exists (use --force to replace it)` : `keygen: cannot write ${v.out}: ${code}`, 1);
  }
  deps.out(`${publicKey}\n`);
}

async function seal(args: string[], deps: SealCommandDeps): Promise<void> {
  const v = parse(args, { 'public-key': { type: 'string' }, proxy: { type: 'string' }, pool: { type: 'string' } }, deps);
  let publicKey = v['public-key'];
  if (!publicKey) {
    if (!v.proxy || !v.pool) deps.fail(`seal: give --public-key, or --proxy and --pool\nusage:\n${SEAL_USAGE}`, 64);
    publicKey = await fetchKey(v.proxy, v.pool, deps);
  }
  const secret = await readSecret(deps.stdin);
  if (!secret) deps.fail('seal: nothing on stdin (the secret is read from stdin, e.g. `read -rs PW; printf %s "$PW" | agent seal …`)', 64);
  deps.out(`${JSON.stringify({ sealed: await sealSecret(secret, publicKey) })}\n`);
}

/** stdin, bounded, without one trailing newline (what `echo` adds). */
async function readSecret(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stdin) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    bytes += b.length;
    if (bytes > MAX_SECRET_CHARS * 4 + 2) throw new OutpostError('invalid_request', `seal: the secret is longer than ${MAX_SECRET_CHARS} characters`);
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

async function fetchKey(proxy: string, pool: string, deps: SealCommandDeps): Promise<string> {
  const token = deps.env.OUTPOST_TOKEN;
  if (!token) deps.fail('seal --proxy: set OUTPOST_TOKEN to an admin or viewer token of the pool', 64);
  let url: URL;
  try {
    url = new URL(`v1/pools/${encodeURIComponent(pool)}/key`, proxy.endsWith('/') ? proxy : `${proxy}/`);
  } catch {
    return deps.fail('seal: --proxy must be an http:// or https:// URL', 64);
  }
  let res: Response;
  try {
    res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (err) {
    return deps.fail(`seal: cannot reach ${url.origin}: ${(err as Error).name}`, 1);
  }
  const body = (await res.json().catch(() => null)) as { publicKey?: unknown; error?: { message?: unknown } } | null;
  if (!res.ok || typeof body?.publicKey !== 'string') {
    const why = typeof body?.error?.message === 'string' ? body.error.message.slice(0, 300) : `HTTP ${res.status}`;
    return deps.fail(`seal: GET ${url.pathname} failed: ${why}`, 1);
  }
  return body.publicKey;
}
