/**
 * Redaction of secrets from log lines (and the CLI's stderr, which is read as
 * a log). Nothing else is redacted: job results, output records and error
 * messages are never rewritten by value, because a rewrite both corrupts data
 * (`admins` → `[REDACTED]s` when a password is `admin`) and answers "is this
 * guess a password?" to whoever can send a payload. Those are kept free of
 * secrets by construction instead (errors are built from codes and safe fields).
 *
 * Two layers here: every secret value the process loads (tokens, passwords) is
 * registered when it is read and replaced wherever it appears in a log line;
 * and credential patterns (URL user-info, bearer/basic credentials,
 * `password=` pairs) are applied where a credential can be: log messages,
 * error texts and URL-like fields, not every string of the metadata.
 *
 * Every pattern runs in linear time on any input (log lines may quote data
 * from a directory, a database or a proxy): no quantified group can be
 * re-entered at another start inside the same run (see the comments on each).
 */
const secrets = new Set<string>();
/** Shorter values would redact ordinary words; they are still kept out by the patterns. */
const MIN_SECRET_LENGTH = 4;
export const REDACTED = '[REDACTED]';

/** Registers a secret value so that `redact` removes it from any log text. */
export function registerSecret(value: string | undefined | null): void {
  if (!value) return;
  const trimmed = value.trim();
  if (trimmed.length >= MIN_SECRET_LENGTH) secrets.add(trimmed);
  // A URL-encoded form may appear inside proxy URLs and error messages.
  const encoded = encodeURIComponent(trimmed);
  if (encoded !== trimmed && encoded.length >= MIN_SECRET_LENGTH) secrets.add(encoded);
}

/**
 * Secrets of running jobs (opened passwords), counted: the same value may be
 * in several jobs at once. Each job releases its own when it ends, so the set
 * holds at most the secrets of the jobs in flight (no growth over many jobs),
 * and a value the config registered stays registered.
 */
const jobSecrets = new Map<string, number>();

/**
 * Registers a job's secret for log redaction until the returned release is
 * called (idempotent). Also registers its URL-encoded form.
 */
export function registerJobSecret(value: string): () => void {
  const forms = [...new Set([value.trim(), encodeURIComponent(value.trim())])].filter((f) => f.length >= MIN_SECRET_LENGTH);
  for (const f of forms) jobSecrets.set(f, (jobSecrets.get(f) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    for (const f of forms) {
      const n = (jobSecrets.get(f) ?? 1) - 1;
      if (n <= 0) jobSecrets.delete(f);
      else jobSecrets.set(f, n);
    }
  };
}

/** How many job secrets are registered now (tests: the set does not grow). */
export function jobSecretCount(): number {
  return jobSecrets.size;
}

/**
 * Credential patterns. Why each is linear:
 * - URL user-info: the scheme may only start where a run of scheme characters
 *   starts (the lookbehind), so a 1 MB run of `[a-z0-9+.-]` is scanned once, not
 *   once per position (the old quadratic case). User and password stop at `/`,
 *   which every `://` contains, so two attempts never scan the same span twice.
 * - bearer/basic: a fixed word, then classes that exclude what precedes them.
 * - key=value: a fixed word, then at most one separator run and one value run.
 *   (A colon followed by a space is prose — `adminToken: must be…` — not a value.)
 */
const PATTERNS: ReadonlyArray<readonly [RegExp, string]> = [
  // scheme://user:password@host → scheme://user:[REDACTED]@host
  [/(?<![a-z0-9+.-])([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@/]*@/gi, `$1:${REDACTED}@`],
  [/\b(bearer\s+)[A-Za-z0-9._~+/=-]+/gi, `$1${REDACTED}`],
  [/\b(basic\s+)[A-Za-z0-9+/=]{8,}/gi, `$1${REDACTED}`],
  // `password=x`, `"token":"x"`, `secret:x`; not `adminToken: must be…` (a colon then a space is prose, not an assignment).
  [/((?:password|passwd|pwd|secret|token)["']?(?:[ \t]*=[ \t]*|:)["']?)[^\s"',;&}]+/gi, `$1${REDACTED}`],
];

/** Replaces every registered secret in `text` (linear in `text` per secret). */
export function redactSecrets(text: string): string {
  let out = text;
  for (const s of secrets) {
    if (out.includes(s)) out = out.split(s).join(REDACTED);
  }
  for (const s of jobSecrets.keys()) {
    if (out.includes(s)) out = out.split(s).join(REDACTED);
  }
  return out;
}

/** Free text (a log message, an error's text): registered secrets and credential patterns. */
export function redact(text: string): string {
  let out = redactSecrets(text);
  for (const [re, rep] of PATTERNS) out = out.replace(re, rep);
  return out;
}

/** Keys whose values are replaced whole. */
const SECRET_KEY = /pass(?:word)?|secret|token|authorization|credential|apikey|api_key|private/i;
/** Keys whose string values are free text or URLs, where credential patterns apply; elsewhere only registered values. */
const TEXT_KEY = /^(?:message|msg|err|error|errors|cause|reason|detail|details|stack|proxy|connection|dsn|href)$|ur[li]s?$/i;

/**
 * Deep copy of a value for logging: values under secret-looking keys are
 * replaced whole, string leaves lose registered secrets, and strings under
 * text or URL keys (and error texts) also go through the credential patterns.
 * Cycles and depth are bounded.
 */
export function redactDeep(value: unknown, key = 'message', depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return TEXT_KEY.test(key) ? redact(value) : redactSecrets(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth > 8 || seen.has(value)) return '[…]';
  seen.add(value);
  if (value instanceof Error) {
    const out: Record<string, unknown> = { name: value.name, message: redact(value.message) };
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) out.code = redactDeep(code, 'code', depth + 1, seen);
    if (value.cause !== undefined) out.cause = redactDeep(value.cause, 'cause', depth + 1, seen);
    return out;
  }
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, key, depth + 1, seen));
  if (Buffer.isBuffer(value)) return `<${value.length} bytes>`;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = SECRET_KEY.test(k) && v !== null && v !== undefined && typeof v !== 'object' ? REDACTED : redactDeep(v, k, depth + 1, seen);
  }
  return out;
}

/** For tests only: forget registered secrets. */
export function clearSecretsForTest(): void {
  secrets.clear();
  jobSecrets.clear();
}
