import { redact } from '../util/redact.js';

/** Values `scrubbedConstant` has already checked; frozen, so they cannot have changed since. */
const checked = new WeakSet<object>();

/**
 * Keeps registered secrets and credential-looking pairs out of results and
 * output (a driver may echo a connection string). Cheap when nothing matches.
 */
export function scrub(value: unknown): unknown {
  if (value === undefined) return null;
  if (typeof value === 'object' && value !== null && checked.has(value)) return value;
  const text = JSON.stringify(value);
  if (text === undefined) return null;
  const clean = redact(text);
  if (clean === text) return value;
  try {
    return JSON.parse(clean);
  } catch {
    return '[REDACTED]';
  }
}

/**
 * Scrubs a result the agent returns over and over (the built-in `ping`'s
 * answer) once, freezes it, and lets `scrub` pass it through afterwards
 * instead of serialising and searching it on every job. Only for flat values
 * made from configuration once every secret is registered (the dispatcher
 * makes ping's on the first ping, after the agent's start() read them all).
 */
export function scrubbedConstant<T extends Record<string, string | number | boolean | null>>(value: T): Readonly<T> {
  const clean = scrub(value);
  const frozen = Object.freeze(typeof clean === 'object' && clean !== null ? (clean as T) : value);
  // A value that needed redaction is left to be scrubbed each time (it never is: ping carries no secret).
  if (clean === value) checked.add(frozen);
  return frozen;
}
