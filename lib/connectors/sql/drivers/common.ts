import { readFileSync } from 'node:fs';
import { OutpostError } from '../../../util/errors.js';
import type { SqlResourceOptions } from '../options.js';

/** Reads `tls.caFile`; a config error names the file, not its content. */
export function readCa(opts: SqlResourceOptions): string | undefined {
  const file = opts.tls?.caFile;
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new OutpostError('config_error', `resources.${opts.name}.tls.caFile: cannot read ${file}: ${code}`);
  }
}

/** knex pool settings shared by every dialect: no idle connection kept open at start (connect lazily). */
export function poolConfig(opts: SqlResourceOptions): { min: number; max: number; propagateCreateError: boolean } {
  return { min: 0, max: opts.pool.max, propagateCreateError: true };
}

/** Converts a callback-style call into a promise (mysql2 and tedious raw connections). */
export function callback<T>(fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value as T))));
}
