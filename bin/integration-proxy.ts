import { parseArgs } from 'node:util';
import { loadProxyConfig, type ProxyConfig } from '../lib/config/proxy.js';
import { createLogger } from '../lib/log/index.js';
import { toWireError } from '../lib/util/errors.js';
import { PROTOCOL_VERSION } from '../lib/protocol/version.js';
import { PACKAGE_VERSION } from '../lib/util/version.js';

/**
 * `integration-proxy start [--config FILE]`, `token create --pool NAME [--admin]`,
 * `version`. Thin: parse argv, load config, run the part.
 */
const USAGE = `usage:
  integration-proxy start [--config FILE]
  integration-proxy token create --pool NAME [--admin] [--config FILE]
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
  const cfg = config(file);
  const log = createLogger({ level: cfg.log.level, format: cfg.log.format, defaultMeta: { component: 'proxy' } });
  const { createProxyServer } = await loadServer();
  const proxy = createProxyServer(cfg, { log });
  let signals = 0;
  const onSignal = (signal: string) => {
    signals++;
    if (signals > 1) process.exit(1);
    log.info('signal received; stopping', { signal });
    proxy.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error('stop failed', { err });
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  try {
    await proxy.start();
  } catch (err) {
    log.error('start failed', { err });
    fail(toWireError(err).message, 1);
  }
}

async function tokenCreate(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { pool: { type: 'string' }, admin: { type: 'boolean', default: false }, config: { type: 'string' } },
    strict: true,
  });
  if (!values.pool) fail('token create needs --pool NAME');
  const cfg = config(values.config);
  const { createProxyServer } = await loadServer();
  const proxy = createProxyServer(cfg, { log: createLogger({ level: 'warn', format: cfg.log.format }) });
  try {
    const token = await proxy.createToken({ pool: values.pool, admin: values.admin ?? false });
    process.stdout.write(`${values.admin ? 'admin ' : ''}token for pool ${values.pool} (shown once; only its hash is stored):\n${token}\n`);
  } catch (err) {
    fail(toWireError(err).message, 1);
  } finally {
    await proxy.stop();
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string' } }, strict: true });
      return start(values.config);
    }
    case 'token':
      if (rest[0] !== 'create') fail(USAGE);
      return tokenCreate(rest.slice(1));
    case 'version':
    case '--version':
      process.stdout.write(`integration-proxy ${PACKAGE_VERSION} (protocol v${PROTOCOL_VERSION})\n`);
      return;
    default:
      fail(USAGE);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => fail(toWireError(err).message));
