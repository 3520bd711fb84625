import convict from 'convict';
import { existsSync } from 'node:fs';
import { OutpostError } from '../util/errors.js';

/** Where a config comes from. */
export interface LoadOptions {
  /** A JSON config file (`--config`); optional. */
  file?: string | undefined;
  /** Environment to read (default `process.env`); tests pass their own. */
  env?: NodeJS.ProcessEnv;
  /** Values applied over file and env, for tests and the CLI. */
  overrides?: Record<string, unknown>;
}

/**
 * Loads a convict schema from file, environment and overrides, validates it
 * strictly (unknown keys are errors) and returns the plain object.
 * Errors become one `config_error` that names each wrong key and why;
 * values of keys marked `sensitive` are never shown.
 */
export function loadConvict<T>(schema: convict.Schema<T>, opts: LoadOptions = {}): T {
  let cfg: convict.Config<T>;
  try {
    cfg = convict<T>(schema, { env: opts.env ?? process.env, args: [] });
  } catch (err) {
    throw new OutpostError('config_error', `invalid configuration: ${(err as Error).message}`);
  }
  if (opts.file) {
    if (!existsSync(opts.file)) throw new OutpostError('config_error', `config file not found: ${opts.file}`);
    try {
      cfg.loadFile(opts.file);
    } catch (err) {
      // Not the parser's text: Node's JSON.parse message quotes the file around the error, which may be a token.
      const why = err instanceof SyntaxError ? 'not valid JSON' : ((err as NodeJS.ErrnoException).code ?? 'unreadable');
      throw new OutpostError('config_error', `cannot read config file ${opts.file}: ${why}`);
    }
  }
  if (opts.overrides) cfg.load(opts.overrides as Partial<T>);
  try {
    cfg.validate({ allowed: 'strict' });
  } catch (err) {
    const lines = (err instanceof Error ? err.message : String(err)).split('\n').filter(Boolean);
    throw new OutpostError('config_error', `invalid configuration: ${lines.join('; ')}`);
  }
  return cfg.getProperties();
}
