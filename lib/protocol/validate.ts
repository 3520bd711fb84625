import type { TSchema, Static } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { OutpostError } from './errors.js';

const cache = new WeakMap<TSchema, TypeCheck<TSchema>>();

function compiled<T extends TSchema>(schema: T): TypeCheck<T> {
  let c = cache.get(schema);
  if (!c) {
    c = TypeCompiler.Compile(schema);
    cache.set(schema, c);
  }
  return c as TypeCheck<T>;
}

/**
 * Checks `value` against `schema`; throws a non-retryable `invalid_request`
 * naming the first wrong fields (`what.path: reason`). Values are never
 * echoed, since a payload may carry secrets.
 */
export function assertValid<T extends TSchema>(schema: T, value: unknown, what: string): Static<T> {
  const check = compiled(schema);
  if (check.Check(value)) return value;
  const problems: string[] = [];
  for (const e of check.Errors(value)) {
    problems.push(`${what}${e.path.replace(/\//g, '.') || ''}: ${e.message}`);
    if (problems.length >= 3) break;
  }
  throw new OutpostError('invalid_request', problems.join('; ') || `${what} is invalid`);
}

/** True when `value` matches `schema`. */
export function isValid<T extends TSchema>(schema: T, value: unknown): value is Static<T> {
  return compiled(schema).Check(value);
}
