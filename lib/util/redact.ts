/**
 * Redaction of secrets from any text that may leave the process (log lines,
 * error messages, job results).
 *
 * Two layers: every secret value the process loads (tokens, passwords) is
 * registered here when it is read, and replaced wherever it appears; and
 * patterns catch credentials that were never registered (URL user-info,
 * bearer tokens, `password=` pairs).
 */
const secrets = new Set<string>();
/** Shorter values would redact ordinary words; they are still kept out by the patterns. */
const MIN_SECRET_LENGTH = 4;
export const REDACTED = '[REDACTED]';

/** Registers a secret value so that `redact` removes it from any text. */
export function registerSecret(value: string | undefined | null): void {
  if (!value) return;
  const trimmed = value.trim();
  if (trimmed.length >= MIN_SECRET_LENGTH) secrets.add(trimmed);
  // A URL-encoded form may appear inside proxy URLs and error messages.
  const encoded = encodeURIComponent(trimmed);
  if (encoded !== trimmed && encoded.length >= MIN_SECRET_LENGTH) secrets.add(encoded);
}

const PATTERNS: Array<[RegExp, string]> = [
  // scheme://user:password@host → scheme://user:[REDACTED]@host
  [/([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):([^\s@/]*)@/gi, `$1:${REDACTED}@`],
  [/(bearer\s+)[A-Za-z0-9._~+/=-]+/gi, `$1${REDACTED}`],
  [/(basic\s+)[A-Za-z0-9+/=]{8,}/gi, `$1${REDACTED}`],
  [/((?:password|passwd|pwd|secret|token)["']?\s*[=:]\s*["']?)[^\s"',;&}]+/gi, `$1${REDACTED}`],
];

/** Returns `text` with every registered secret and every credential-looking pattern replaced. */
export function redact(text: string): string {
  let out = text;
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join(REDACTED);
  }
  for (const [re, rep] of PATTERNS) out = out.replace(re, rep);
  return out;
}

const SECRET_KEY = /pass(word)?|secret|token|authorization|credential|apikey|api_key|private/i;

/**
 * Deep copy of a value for logging: string leaves are redacted, values under
 * secret-looking keys are replaced whole. Cycles and depth are bounded.
 */
export function redactDeep(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return redact(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth > 8 || seen.has(value)) return '[…]';
  seen.add(value);
  if (value instanceof Error) {
    return { name: value.name, message: redact(value.message), code: (value as { code?: unknown }).code };
  }
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth + 1, seen));
  if (Buffer.isBuffer(value)) return `<${value.length} bytes>`;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_KEY.test(k) && v !== null && v !== undefined && typeof v !== 'object' ? REDACTED : redactDeep(v, depth + 1, seen);
  }
  return out;
}

/** For tests only: forget registered secrets. */
export function clearSecretsForTest(): void {
  secrets.clear();
}
