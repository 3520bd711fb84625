import { parseArgs } from 'node:util';
import { loadProxyConfig, type ProxyConfig } from '../lib/config/proxy.js';
import { createLogger } from '../lib/log/index.js';
import { toWireError } from '../lib/util/errors.js';
import { PROTOCOL_VERSION } from '../lib/protocol/version.js';
import { PACKAGE_VERSION } from '../lib/util/version.js';
import { TOKEN_USAGE, tokenCommand } from './proxy-tokens.js';
import { POOL_USAGE, poolCommand } from './proxy-pools.js';
import { catchSignals, stopWith, tolerateClosedOutput } from './signals.js';

/**
 * `integration-proxy start [--config FILE]`, `token create|list|revoke`
 * (bin/proxy-tokens.ts), `version`. Thin: parse argv, load config, run the part.
 */
const USAGE = `usage:
  integration-proxy start [--config FILE]
${TOKEN_USAGE}
${POOL_USAGE}
  integration-proxy version`;


/** The server (fastify, knex, pg) loads only once the config is known to be valid: errors answer fast. */
function loadServer(): Promise<typeof import('../lib/proxy/server.js')> {
  return import('../lib/proxy/server.js');
}

function fail(message: string, code = 2): never {
  process.stderr.write(`integration-proxy: ${message}\n`);
  process.exit(code);
}

function config(file: string | undefined): ProxyConfig {
  try {
    return loadProxyConfig({ file });
  } catch (err) {
    return fail(toWireError(err).message);
  }
}

async function start(file: string | undefined): Promise<void> {
  // Usually done already by the bin/integration-proxy shim, before any module loaded: until stopWith(), a signal exits 0.
  catchSignals();
  const cfg = config(file);
  const log = createLogger({ ...cfg.log, defaultMeta: { component: 'proxy' } });
  const { createProxyServer } = await loadServer();
  const proxy = createProxyServer(cfg, { log });
  const started = proxy.start();
  // A signal during start waits for it to settle, then stops. The proxy holds no work of its own (jobs
  // live in the store), so a second signal exits at once instead of waiting for requests in flight.
  stopWith(
    async (skipGrace) => {
      if (skipGrace) return;
      await started.catch(() => undefined);
      await proxy.stop();
    },
    (signal, count) => log.info(count > 1 ? 'second signal; exiting now' : 'signal received; stopping', { signal }),
  );
  try {
    await started;
  } catch (err) {
    log.error('start failed', { err });
    fail(toWireError(err).message, 1);
  }
}

async function main(argv: string[]): Promise<void> {
  tolerateClosedOutput();
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string' } }, strict: true });
      return start(values.config);
    }
    case 'token':
      return tokenCommand(rest, { config, loadServer, fail, out: (text) => process.stdout.write(text) });
    case 'pool':
      return poolCommand(rest, { config, loadServer, fail, out: (text) => process.stdout.write(text) });
    case 'version':
    case '--version':
      process.stdout.write(`integration-proxy ${PACKAGE_VERSION} (protocol v${PROTOCOL_VERSION})\n`);
      return;
    default:
      fail(USAGE);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => fail(toWireError(err).message));
