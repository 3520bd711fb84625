import { parseArgs } from 'node:util';
import { createLogger } from '../lib/log/index.js';
import { toWireError } from '../lib/util/errors.js';
import type { TokenCommandDeps } from './proxy-tokens.js';

/** `integration-proxy pool …`: per-pool settings in the configured store. */
export const POOL_USAGE = `  integration-proxy pool set-key --pool NAME --public-key BASE64 [--config FILE]   (the public key from \`agent keygen\`)`;

/**
 * `pool set-key`: stores a pool's public sealing key (what the job side seals
 * passwords with; `GET /v1/pools/{pool}/key` hands it out). The private key
 * stays with the pool's agents and is never given to the proxy.
 */
export async function poolCommand(args: string[], deps: TokenCommandDeps): Promise<void> {
  const [sub, ...rest] = args;
  if (sub !== 'set-key') deps.fail(`usage:\n${POOL_USAGE}`);
  let values: { pool?: string; 'public-key'?: string; config?: string };
  try {
    ({ values } = parseArgs({ args: rest, options: { pool: { type: 'string' }, 'public-key': { type: 'string' }, config: { type: 'string' } }, strict: true }));
  } catch (err) {
    // Node's message names the option, not its value.
    deps.fail(`${(err as Error).message}\nusage:\n${POOL_USAGE}`);
  }
  if (!values.pool || !values['public-key']) deps.fail(`--pool and --public-key are required\nusage:\n${POOL_USAGE}`);
  const cfg = deps.config(values.config);
  const { createProxyServer } = await deps.loadServer();
  const proxy = createProxyServer(cfg, { log: createLogger({ level: 'warn', format: cfg.log.format }) });
  let failure: unknown;
  try {
    const key = await proxy.setPoolKey(values.pool, values['public-key'].trim());
    deps.out(`public sealing key of pool ${key.pool} set (${key.algorithm})\n`);
  } catch (err) {
    failure = err;
  } finally {
    await proxy.stop();
  }
  if (failure !== undefined) deps.fail(toWireError(failure).message, 1);
}
