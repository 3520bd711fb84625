import { parseArgs } from 'node:util';
import { AGENT_VERSION } from '../lib/agent/version.js';
import { loadAgentConfig, type AgentConfig } from '../lib/config/agent.js';
import { OutpostError, toWireError } from '../lib/util/errors.js';
import { redact } from '../lib/util/redact.js';
import { catchSignals, stopWith, tolerateClosedOutput } from './signals.js';
import { SEAL_USAGE } from './agent-seal.js';

const USAGE = `usage: agent <command> [options]

commands:
  start [--config FILE]   run until SIGTERM/SIGINT, then drain and exit 0
  check [--config FILE] [--json]
                          validate config, reach the proxy and every resource; say how to
                          fix what fails (exit 1) or is unsafe (WARN, exit 0); --json: rows as JSON
  version                 print the version
  keygen --out FILE       new pool sealing key pair (see below)
  seal …                  seal a secret from stdin for a pool (see below)

sealed secrets:
${SEAL_USAGE}

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
  const log = createLogger(config.log);
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

async function check(file: string | undefined, json: boolean): Promise<void> {
  const config = load(file);
  const { checkAgent } = await import('../lib/agent/check.js');
  const rows = await checkAgent(config);
  if (config.sealing?.privateKey) rows.push(await sealingRow(config.sealing.privateKey));
  const rowsOut = [{ target: 'config', ok: true, level: 'ok' as const, latencyMs: 0, detail: 'valid' }, ...rows].map((r) => ({
    ...r,
    detail: redact(r.detail),
    ...('hint' in r && r.hint ? { hint: redact(r.hint) } : {}),
  }));
  if (json) {
    // For automation: an array of {target, ok, level: ok|warn|fail, latencyMs, detail, hint?}.
    process.stdout.write(`${JSON.stringify(rowsOut, null, 2)}\n`);
  } else {
    const width = Math.max(...rowsOut.map((r) => r.target.length), 6);
    process.stdout.write(`${'TARGET'.padEnd(width)}  STATUS  LATENCY  DETAIL\n`);
    for (const r of rowsOut) {
      const status = r.level === 'ok' ? 'ok' : r.level.toUpperCase();
      process.stdout.write(`${redact(`${r.target.padEnd(width)}  ${status.padEnd(6)}  ${`${r.latencyMs}ms`.padStart(7)}  ${r.detail}`)}\n`);
      if ('hint' in r && r.hint) process.stdout.write(`${' '.repeat(width)}  ${''.padEnd(6)}  ${''.padStart(7)}  fix: ${r.hint}\n`);
    }
  }
  // Warnings alone exit 0: the agent works, the operator was told.
  process.exit(rowsOut.some((r) => r.level === 'fail') ? 1 : 0);
}

/** The sealing key parses; its public key is shown to compare with `GET /v1/pools/{pool}/key` (a public key is no secret). */
async function sealingRow(privateKey: string) {
  const { checkPrivateKey } = await import('../lib/agent/secrets.js');
  try {
    return { target: 'sealing key', ok: true, level: 'ok' as const, latencyMs: 0, detail: `public key ${await checkPrivateKey(privateKey)}` };
  } catch (err) {
    return { target: 'sealing key', ok: false, level: 'fail' as const, latencyMs: 0, detail: toWireError(err).message };
  }
}

async function main(): Promise<void> {
  tolerateClosedOutput();
  const [first, ...args] = process.argv.slice(2);
  if (first === 'keygen' || first === 'seal') {
    const { sealCommand } = await import('./agent-seal.js');
    return sealCommand(first, args, { fail, out: (text) => process.stdout.write(text), stdin: process.stdin, env: process.env });
  }
  let parsed;
  try {
    parsed = parseArgs({ args: process.argv.slice(2), allowPositionals: true, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' }, json: { type: 'boolean' } } });
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
      return check(parsed.values.config, parsed.values.json === true);
    case 'version':
      process.stdout.write(`${AGENT_VERSION}\n`);
      return;
    default:
      fail(command ? `unknown command: ${command}\n${USAGE}` : USAGE, 64);
  }
}

void main();
