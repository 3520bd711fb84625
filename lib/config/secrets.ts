import { readFileSync } from 'node:fs';
import { OutpostError } from '../util/errors.js';
import { registerSecret } from '../util/redact.js';

/**
 * Reads a secret from a file (a Kubernetes secret mount), trims the trailing
 * newline and registers it for redaction. The error names the file, never
 * its content.
 */
export function readSecretFile(path: string, what = 'secret'): string {
  let value: string;
  try {
    value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    throw new OutpostError('config_error', `cannot read ${what} file ${path}: ${code}`);
  }
  if (!value) throw new OutpostError('config_error', `${what} file ${path} is empty`);
  registerSecret(value);
  return value;
}

/** Resolves a secret given either inline (from env) or as a file; registers it for redaction. */
export function resolveSecret(opts: { value?: string | null; file?: string | null; what: string }): string | undefined {
  if (opts.value) {
    registerSecret(opts.value);
    return opts.value;
  }
  if (opts.file) return readSecretFile(opts.file, opts.what);
  return undefined;
}
