import { createLogger as createWinston, format, transports, type Logger } from 'winston';
import type Transport from 'winston-transport';
/** winston's level key on an info object (triple-beam's LEVEL). */
const LEVEL = Symbol.for('level');
import { redact, redactDeep } from '../util/redact.js';

export type { Logger } from 'winston';

/** Logger options (from the `log` slice of agent or proxy config). */
export interface LogOptions {
  /** winston level. Default `info`. */
  level?: string;
  /** `json` (one object a line, the default) or `pretty` for a terminal. */
  format?: 'json' | 'pretty';
  /** Where lines go. Default: stdout. Tests pass a stream to capture lines. */
  stream?: NodeJS.WritableStream;
  /** Fields on every line, such as `{ component: 'agent', agentId }`. */
  defaultMeta?: Record<string, unknown>;
}

/**
 * Redaction runs last over the whole info object: every string (message,
 * metadata, error text) is cleaned of registered secrets and credential
 * patterns before any transport sees it.
 */
const redactFormat = format((info) => {
  const cleaned = redactDeep({ ...info }) as Record<string, unknown>;
  for (const key of Object.keys(cleaned)) (info as Record<string, unknown>)[key] = cleaned[key];
  if (typeof info.message === 'string') info.message = redact(info.message);
  return info;
});

/** Builds the process logger. Children (`log.child({ jobId })`) inherit redaction. */
export function createLogger(opts: LogOptions = {}): Logger {
  // winston runs the whole format chain before the transports drop a line
  // below their level; dropping it first keeps debug calls on hot paths cheap.
  const levelGate = format((info) => (logger.isLevelEnabled(String((info as unknown as Record<symbol, unknown>)[LEVEL] ?? info.level)) ? info : false));
  const output =
    opts.format === 'pretty'
      ? format.combine(levelGate(), format.timestamp(), redactFormat(), format.colorize(), format.printf(prettyLine))
      : format.combine(levelGate(), format.timestamp(), format.errors({ stack: false }), redactFormat(), format.json());
  const transport: Transport = opts.stream
    ? new transports.Stream({ stream: opts.stream })
    : new transports.Console();
  const logger: Logger = createWinston({
    level: opts.level ?? 'info',
    format: output,
    defaultMeta: opts.defaultMeta,
    transports: [transport],
  });
  return logger;
}

function prettyLine(info: Record<string, unknown>): string {
  const { level, message, timestamp, ...rest } = info;
  const meta = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
  return `${String(timestamp)} ${String(level)} ${String(message)}${meta}`;
}

/** A logger that drops everything, for unit tests that do not look at logs. */
export function silentLogger(): Logger {
  return createWinston({ silent: true, transports: [new transports.Console({ silent: true })] });
}
