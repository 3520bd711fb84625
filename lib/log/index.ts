import { createLogger as createWinston, format, transports, type Logger as WinstonLogger } from 'winston';
import Transport from 'winston-transport';
import { redactDeep } from '../util/redact.js';
import { RotatingFile } from './file.js';
/** winston's level key on an info object (triple-beam's LEVEL). */
const LEVEL = Symbol.for('level');
/** winston's formatted line on an info object (triple-beam's MESSAGE). */
const MESSAGE = Symbol.for('message');

/** The levels Outpost logs at, most severe first. */
export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

/**
 * What every module logs through: four levels, children with extra fields,
 * and a level check for lines that cost work to build. Modules type against
 * this, not winston's class, so a test or an embedder may pass any logger of
 * this shape; `createLogger` gives the winston-based one.
 */
export interface Logger {
  error(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  debug(message: string, meta?: Record<string, unknown>): void;
  /** A logger adding `meta` to every line (`log.child({ jobId })`); it keeps the parent's outputs, level and redaction. */
  child(meta: Record<string, unknown>): Logger;
  /** Whether a line at `level` would be written: skip building costly fields when it would not. */
  enabled(level: LogLevel): boolean;
}

/** The process logger: a Logger whose outputs can be closed (files flushed) at exit. */
export interface ProcessLogger extends Logger {
  /** Ends the outputs (the log file is flushed and closed). */
  close(): void;
}

/** A winston logger as a Logger (`createLogger` uses it; an embedder may wrap its own winston logger). */
export function fromWinston(w: WinstonLogger): ProcessLogger {
  return new WinstonAdapter(w);
}

class WinstonAdapter implements ProcessLogger {
  constructor(private readonly w: WinstonLogger) {}
  // Without meta, winston is called with the message alone: an `undefined` splat would ride on the line.
  error(message: string, meta?: Record<string, unknown>): void {
    if (meta === undefined) this.w.error(message);
    else this.w.error(message, meta);
  }
  warn(message: string, meta?: Record<string, unknown>): void {
    if (meta === undefined) this.w.warn(message);
    else this.w.warn(message, meta);
  }
  info(message: string, meta?: Record<string, unknown>): void {
    if (meta === undefined) this.w.info(message);
    else this.w.info(message, meta);
  }
  debug(message: string, meta?: Record<string, unknown>): void {
    if (meta === undefined) this.w.debug(message);
    else this.w.debug(message, meta);
  }
  child(meta: Record<string, unknown>): Logger {
    return new WinstonAdapter(this.w.child(meta));
  }
  enabled(level: LogLevel): boolean {
    return this.w.isLevelEnabled(level);
  }
  close(): void {
    this.w.close();
  }
}

/** Logger options (from the `log` slice of agent or proxy config). */
export interface LogOptions {
  /** winston level. Default `info`. */
  level?: string;
  /** `json` (one object a line, the default) or `pretty` for a terminal. */
  format?: 'json' | 'pretty';
  /**
   * Where lines go. Default: stdout, falling back to stderr once stdout fails
   * (a closed pipe: `agent start | head -1`). Tests pass a stream to capture lines.
   */
  stream?: NodeJS.WritableStream;
  /** Fields on every line, such as `{ component: 'agent', agentId }`. */
  defaultMeta?: Record<string, unknown>;
  /**
   * Also write JSON lines to this file (config `log.file`). Default null (no
   * file). Always JSON, whatever `format` says: `pretty` is for a terminal.
   */
  file?: string | null;
  /** The file is rotated when it would grow past this (config `log.maxSizeBytes`). Default 10 MiB. */
  maxSizeBytes?: number;
  /** Files kept, the current one included: `agent.log`, `agent1.log` … (config `log.maxFiles`). Default 5. */
  maxFiles?: number;
}

/** Default of `log.maxSizeBytes`. */
export const DEFAULT_LOG_MAX_SIZE_BYTES = 10 * 1024 * 1024;
/** Default of `log.maxFiles`. */
export const DEFAULT_LOG_MAX_FILES = 5;

/**
 * Redaction runs last over the whole info object before any transport sees
 * it: values under secret-looking keys are replaced, every string loses the
 * registered secrets, and the message, error texts and URL fields also lose
 * credential patterns (lib/util/redact.ts; linear time on any input).
 */
const redactFormat = format((info) => {
  const cleaned = redactDeep({ ...info }) as Record<string, unknown>;
  for (const key of Object.keys(cleaned)) (info as Record<string, unknown>)[key] = cleaned[key];
  return info;
});

/**
 * Builds the process logger. Children (`log.child({ jobId })`) inherit redaction.
 * The shared chain (level gate, timestamp, redaction) runs once per line; each
 * transport then renders it: the console as JSON or `pretty` (coloured only on
 * a TTY), the file (`opts.file`) always as JSON, rotated by size (./file.ts:
 * the newest lines are always in `opts.file`, older ones in `name1.ext`,
 * `name2.ext` …, as winston's tailable File transport names them).
 */
export function createLogger(opts: LogOptions = {}): ProcessLogger {
  // winston runs the whole format chain before the transports drop a line
  // below their level; dropping it first keeps debug calls on hot paths cheap.
  const levelGate = format((info) => {
    const level = (info as unknown as Record<symbol, unknown>)[LEVEL];
    return logger.isLevelEnabled(typeof level === 'string' ? level : info.level) ? info : false;
  });
  const shared = format.combine(levelGate(), format.timestamp(), format.errors({ stack: false }), redactFormat());
  const outputs = opts.stream ? [opts.stream] : [process.stdout, process.stderr];
  const colours = (outputs[0] as { isTTY?: boolean }).isTTY === true;
  const consoleFormat =
    opts.format === 'pretty' ? format.combine(...(colours ? [format.colorize()] : []), format.printf(prettyLine)) : format.json();
  const transportsUsed: Transport[] = [new LineStreams(outputs, consoleFormat)];
  if (opts.file) {
    transportsUsed.push(
      new RotatingFile({
        file: opts.file,
        format: format.json(),
        maxSizeBytes: opts.maxSizeBytes ?? DEFAULT_LOG_MAX_SIZE_BYTES,
        maxFiles: opts.maxFiles ?? DEFAULT_LOG_MAX_FILES,
      }),
    );
  }
  const logger: WinstonLogger = createWinston({
    level: opts.level ?? 'info',
    format: shared,
    defaultMeta: opts.defaultMeta,
    transports: transportsUsed,
  });
  // A transport error (the log file's disk full, its directory removed) must not
  // take the process down: winston re-emits it on the logger, unhandled by default.
  let reported = false;
  logger.on('error', (err: NodeJS.ErrnoException, transport?: unknown) => {
    if (reported) return;
    reported = true;
    const output = transport instanceof RotatingFile ? 'log.file (lines dropped; tried again every 10 s)' : 'console';
    outputs[0]?.write(`${JSON.stringify({ level: 'error', message: 'a log output failed', output, code: err.code ?? 'error' })}\n`);
  });
  return fromWinston(logger);
}

/**
 * Writes each line to the first stream that has not failed. A write error
 * (EPIPE once the reader of a pipe is gone) marks that stream dead and moves
 * on to the next, saying so once there; with none left, lines are dropped.
 * Never retries a dead stream and never throws: logging must not spin or take
 * the process down (winston's Console transport leaves the error unhandled, and
 * a handler that logs it writes to the same dead pipe again).
 */
class LineStreams extends Transport {
  private readonly failed = new Set<NodeJS.WritableStream>();

  constructor(
    private readonly outputs: NodeJS.WritableStream[],
    lineFormat: ReturnType<typeof format.json>,
  ) {
    super({ format: lineFormat });
    for (const s of new Set(outputs)) s.on('error', (err: NodeJS.ErrnoException) => this.fail(s, err));
  }

  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    this.writeLine(`${String(info[MESSAGE])}\n`);
    next();
  }

  private writeLine(line: string): void {
    const s = this.outputs.find((x) => !this.failed.has(x) && !(x as { destroyed?: boolean }).destroyed);
    if (!s) return;
    try {
      s.write(line);
    } catch (err) {
      this.fail(s, err as NodeJS.ErrnoException);
    }
  }

  private fail(stream: NodeJS.WritableStream, err: NodeJS.ErrnoException): void {
    if (this.failed.has(stream)) return;
    this.failed.add(stream);
    const i = this.outputs.indexOf(stream);
    if (i >= 0 && i < this.outputs.length - 1) {
      this.writeLine(`${JSON.stringify({ level: 'warn', message: 'log output failed; writing to the next stream', code: err.code ?? 'error', stream: i })}\n`);
    }
  }
}

function prettyLine(info: Record<string, unknown>): string {
  const { level, message, timestamp, ...rest } = info;
  const meta = Object.keys(rest).length ? ' ' + JSON.stringify(rest) : '';
  return `${String(timestamp)} ${String(level)} ${String(message)}${meta}`;
}

/** A logger that drops everything, for unit tests that do not look at logs. */
export function silentLogger(): Logger {
  return fromWinston(createWinston({ silent: true, transports: [new transports.Console({ silent: true })] }));
}
