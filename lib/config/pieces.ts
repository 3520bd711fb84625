/**
 * The pieces both convict schemas (agent and proxy) share, written once:
 * bounded integers and durations, the log section, and the type that a
 * schema's values have, derived from the schema itself so that no config
 * type is kept by hand beside it.
 */

/** winston's npm levels, most severe first. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * A convict format: an integer in [min, max] (no upper bound when `max` is
 * left out). convict puts the key in front of the message
 * (`concurrency: must be an integer in [1, 1000]`).
 */
export function intIn(min: number, max?: number): (v: unknown) => void {
  const why = max !== undefined ? `must be an integer in [${min}, ${max}]` : min === 1 ? 'must be a positive integer' : `must be an integer >= ${min}`;
  return (v: unknown) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || (max !== undefined && v > max)) throw new Error(why);
  };
}

/** A convict format: a number (fractions allowed) in [min, max]. */
export function numberIn(min: number, max: number): (v: unknown) => void {
  return (v: unknown) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new Error(`must be a number in [${min}, ${max}]`);
  };
}

/**
 * A convict key holding a duration in milliseconds (or any bounded count):
 * an integer in [min, max], default min 1 and no upper bound.
 */
export function intKey(doc: string, dflt: number, env: string, bounds: { min?: number; max?: number } = {}) {
  return { doc, format: intIn(bounds.min ?? 1, bounds.max), default: dflt, env };
}

/**
 * The `log` section of a process config; `prefix` names its environment
 * (`AGENT` → AGENT_LOG_LEVEL …, `PROXY` → PROXY_LOG_LEVEL …).
 */
export function logSchema(prefix: 'AGENT' | 'PROXY') {
  return {
    /** Log level. Default `info`. */
    level: { doc: 'log level', format: [...LOG_LEVELS], default: 'info' as LogLevel, env: `${prefix}_LOG_LEVEL` },
    /** `json` (default) or `pretty` for a terminal. */
    format: { doc: 'json or pretty', format: [...LOG_FORMATS], default: 'json' as LogFormat, env: `${prefix}_LOG_FORMAT` },
    /** Also write JSON lines to this file. Default null. */
    file: { doc: 'also write JSON log lines to this file', format: String, default: null as string | null, env: `${prefix}_LOG_FILE`, nullable: true },
    /** Rotate the log file past this size. Default 10 MiB. */
    maxSizeBytes: { doc: 'rotate the log file past this size', format: intIn(1024, 2 ** 40), default: 10 * 1024 * 1024, env: `${prefix}_LOG_MAX_SIZE_BYTES` },
    /** Log files kept, the current one included. Default 5. */
    maxFiles: { doc: 'log files kept (the current one included)', format: intIn(1, 1000), default: 5, env: `${prefix}_LOG_MAX_FILES` },
  };
}

/** A convict leaf: anything with a `default`. */
interface ConvictLeaf {
  default: unknown;
}

/**
 * The values a convict schema loads to: each leaf becomes the type of its
 * `default` (write `null as string | null` for an optional key, `'json' as
 * LogFormat` for an enum), each section recurses. TSDoc on a schema key
 * shows on the derived key.
 */
export type ConvictValues<S> = {
  -readonly [K in keyof S]: S[K] extends ConvictLeaf ? S[K]['default'] : ConvictValues<S[K]>;
};
