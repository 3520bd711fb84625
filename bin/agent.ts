import { parseArgs } from 'node:util';
import { AGENT_VERSION } from '../lib/agent/version.js';
import { loadAgentConfig, type AgentConfig } from '../lib/config/agent.js';
import { OutpostError, toWireError } from '../lib/util/errors.js';
import { redact } from '../lib/util/redact.js';
import { catchSignals, stopWith, tolerateClosedOutput } from './signals.js';

const USAGE = `usage: agent <command> [options]

commands:
  start [--config FILE]   run until SIGTERM/SIGINT, then drain and exit 0
  check [--config FILE]   validate config, reach the proxy and every resource
  version                 print the version

The config file may also come from AGENT_CONFIG; every key can be set by environment (see config/README.md).`;

function fail(message: string, code = 1): never {
  process.stderr.write(`agent: ${redact(message)}\n`);
  process.exit(code);
}

function load(file: string | undefined): AgentConfig {
  try {
    return loadAgentConfig({ file });
  } catch (err) {
    fail(err instanceof OutpostError ? err.message : toWireError(err).message, 2);
  }
}

async function start(file: string | undefined): Promise<void> {
  // Usually done already by the bin/agent shim, before any module loaded: until stopWith(), a signal exits 0.
  catchSignals();
  const config = load(file);
  // Loaded only when needed: `version` and config errors answer without loading the HTTP stack.
  const [{ createAgent }, { createLogger }] = await Promise.all([import('../lib/agent/agent.js'), import('../lib/log/index.js')]);
  const log = createLogger({ level: config.log.level, format: config.log.format });
  let agent;
  try {
    agent = createAgent(config, { log });
  } catch (err) {
    fail(toWireError(err).message, 2);
  }
  const running = agent;
  const started = running.start();
  // A signal during start waits for it to settle, then drains: nothing is left half-started.
  stopWith(
    async (skipGrace) => {
      await started.catch(() => undefined);
      await running.stop({ skipWait: skipGrace });
    },
    (sig, count) => log.info(`received ${sig}${count > 1 ? ': skipping the grace period' : ''}`, { agentId: config.agentId }),
  );
  try {
    await started;
  } catch (err) {
    log.error('start failed', { err });
    fail(toWireError(err).message, 2);
  }
  // A bug must not take jobs down silently: log it once, drain, and exit non-zero.
  let crashed = false;
  process.on('uncaughtException', (err) => {
    if (crashed) return;
    crashed = true;
    log.error('uncaught exception', { err });
    void running.stop().finally(() => process.exit(1));
  });
}

async function check(file: string | undefined): Promise<void> {
  const config = load(file);
  const { checkAgent } = await import('../lib/agent/agent.js');
  const rows = await checkAgent(config);
  const rowsOut = [{ target: 'config', ok: true, latencyMs: 0, detail: 'valid' }, ...rows];
  const width = Math.max(...rowsOut.map((r) => r.target.length), 6);
  process.stdout.write(`${'TARGET'.padEnd(width)}  STATUS  LATENCY  DETAIL\n`);
  for (const r of rowsOut) {
    const line = `${r.target.padEnd(width)}  ${(r.ok ? 'ok' : 'FAIL').padEnd(6)}  ${`${r.latencyMs}ms`.padStart(7)}  ${r.detail}`;
    process.stdout.write(`${redact(line)}\n`);
  }
  process.exit(rowsOut.every((r) => r.ok) ? 0 : 1);
}

async function main(): Promise<void> {
  tolerateClosedOutput();
  let parsed;
  try {
    parsed = parseArgs({ args: process.argv.slice(2), allowPositionals: true, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    fail(`${(err as Error).message}\n${USAGE}`, 64);
  }
  const [command, ...rest] = parsed.positionals;
  if (parsed.values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (rest.length > 0) fail(`unexpected argument: ${rest[0]}\n${USAGE}`, 64);
  switch (command) {
    case 'start':
      return start(parsed.values.config);
    case 'check':
      return check(parsed.values.config);
    case 'version':
      process.stdout.write(`${AGENT_VERSION}\n`);
      return;
    default:
      fail(command ? `unknown command: ${command}\n${USAGE}` : USAGE, 64);
  }
}

void main();
