/**
 * The pieces every resource kind's config (`resources.<name>`) is built
 * from, written once: one TypeBox schema per kind, compiled once at module
 * load; errors that name `resources.<name>.<key>` in plain words and never
 * show a value; the password given the same three ways for every kind; and
 * options frozen once built. A connector's parse function is then: check
 * the schema, apply its defaults (each documented in TSDoc where the key is
 * declared), check what the schema cannot say (DNs, filters, URLs), freeze.
 */
import { Kind, Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value, ValueErrorType, type ValueError } from '@sinclair/typebox/value';
import { OutpostError } from '../util/errors.js';
import { registerSecret } from '../util/redact.js';

/** `{ additionalProperties: false }`: an unknown key is an error, never ignored. */
export const Strict = { additionalProperties: false } as const;

/** An integer in [min, max]: a duration in ms, a size, a count. The key's TSDoc says its default and unit. */
export const IntIn = (min: number, max: number) => Type.Integer({ minimum: min, maximum: max });

/** A non-empty string of at most `maxLength` characters. */
export const Text = (maxLength = 4096) => Type.String({ minLength: 1, maxLength });

/**
 * The three ways a resource's password is given, the same for every kind;
 * spread into the object that holds the password (`...SecretFields`).
 * At most one may be set.
 */
export const SecretFields = {
  /** File holding the password (a Kubernetes secret mount); the trailing newline is trimmed. Preferred. */
  passwordFile: Type.Optional(Text(4096)),
  /** Name of an environment variable holding the password. */
  passwordEnv: Type.Optional(Type.String({ minLength: 1, maxLength: 256, pattern: '^[A-Za-z_][A-Za-z0-9_]*$' })),
  /** The password itself (keep the config file as secret as the password then). */
  password: Type.Optional(Type.String({ minLength: 1 })),
};

/** What resolving a secret needs: the secret-file reader (registers for redaction) and the environment. */
export interface SecretDeps {
  readSecret(path: string): string;
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * Resolves the password of `SecretFields` at `prefix` (e.g. `connection.`).
 * Returns a getter, or undefined when none is set (`required` makes that an
 * error). A file is read now, so a missing one fails at startup, and again at
 * each call, so a rotated secret works without a restart. Every value is
 * registered for redaction; errors name the key, never the value. `other`
 * names one more source the kind has (a password inside a URL).
 */
export function resolvePassword(
  at: (key: string) => string,
  prefix: string,
  raw: { password?: string | undefined; passwordFile?: string | undefined; passwordEnv?: string | undefined },
  deps: SecretDeps,
  opts: { required?: boolean; other?: { what: string; value: string | undefined } } = {},
): (() => string) | undefined {
  const other = opts.other?.value;
  const given = [raw.password, raw.passwordFile, raw.passwordEnv, other].filter((v) => v !== undefined).length;
  if (given > 1) {
    const also = opts.other ? `, passwordEnv or ${opts.other.what}` : ' or passwordEnv';
    throw new OutpostError('config_error', `${at(`${prefix}password`)}: set only one of password, passwordFile${also}`);
  }
  if (raw.passwordFile !== undefined) {
    const file = raw.passwordFile;
    deps.readSecret(file);
    return () => deps.readSecret(file);
  }
  let value = raw.password ?? other;
  if (raw.passwordEnv !== undefined) {
    value = (deps.env ?? process.env)[raw.passwordEnv];
    if (!value) throw new OutpostError('config_error', `${at(`${prefix}passwordEnv`)}: environment variable ${raw.passwordEnv} is not set`);
  }
  if (value === undefined) {
    if (opts.required) throw new OutpostError('config_error', `${at(`${prefix}passwordFile`)}: a password is required: set passwordFile, passwordEnv or password`);
    return undefined;
  }
  const secret = value;
  registerSecret(secret);
  return () => secret;
}

/** A resource schema compiled once: `check` validates one raw entry or throws `config_error`. */
export interface CompiledResourceSchema<T extends TSchema> {
  readonly schema: T;
  /**
   * Validates `raw` (a `null` or undefined value counts as absent, as in the earlier SQL
   * options) and returns it typed. Throws one `config_error` naming up to
   * three wrong keys as `resources.<name>.<key>: <why>`; never a value.
   */
  check(name: string, raw: unknown): Static<T>;
}

/** Compiles a resource kind's schema (do it once, at module load). */
export function compileResourceSchema<T extends TSchema>(schema: T): CompiledResourceSchema<T> {
  const compiled = TypeCompiler.Compile(schema);
  return {
    schema,
    check(name, raw) {
      const value = withoutNulls(raw);
      if (compiled.Check(value)) return value;
      const problems = new Map<string, string>();
      for (const e of compiled.Errors(value)) {
        for (const [key, why] of explain(e)) if (!problems.has(key)) problems.set(key, why);
        if (problems.size >= 3) break;
      }
      const text = [...problems].slice(0, 3).map(([key, why]) => `resources.${name}${key ? `.${key}` : ''}: ${why}`);
      throw new OutpostError('config_error', text.join('; ') || `resources.${name}: invalid`);
    },
  };
}

/** Freezes plain objects and arrays all the way down (not Buffers, class instances or functions). */
export function freezeOptions<T>(value: T): Readonly<T> {
  if (Array.isArray(value) || (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype)) {
    for (const v of Object.values(value as object)) freezeOptions(v);
    Object.freeze(value);
  }
  return value;
}

function withoutNulls(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(withoutNulls);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== null && x !== undefined).map(([k, x]) => [k, withoutNulls(x)]));
}

const keyOf = (path: string) => path.replace(/^\//, '').replace(/\//g, '.');

/** Plain-words reasons for one TypeBox error, as [key, why]; a union is explained by the member the value's type picks. */
function explain(e: ValueError): Array<[string, string]> {
  const s = e.schema as TSchema & Record<string, unknown>;
  if (typeof s.errorMessage === 'string') return [[keyOf(e.path), s.errorMessage]];
  if (e.type === ValueErrorType.Union) {
    const members = (s.anyOf as TSchema[] | undefined) ?? [];
    const literals = members.filter((m) => m[Kind] === 'Literal').map((m) => JSON.stringify(m.const));
    if (literals.length === members.length) return [[keyOf(e.path), literals.length === 2 ? `must be ${literals[0]} or ${literals[1]}` : `must be one of ${literals.join(', ')}`]];
    const type = Array.isArray(e.value) ? 'array' : e.value === null ? 'null' : typeof e.value;
    const member = members.find((m) => (m.type === 'integer' ? 'number' : m.type) === type);
    if (member) return [...Value.Errors(member, e.value)].flatMap((inner) => explain({ ...inner, path: e.path + inner.path }));
    return [[keyOf(e.path), `must be ${members.map(describe).join(' or ')}`]];
  }
  return [[keyOf(e.path), why(e, s)]];
}

function why(e: ValueError, s: Record<string, unknown>): string {
  switch (e.type) {
    case ValueErrorType.ObjectAdditionalProperties:
      return 'unknown key';
    case ValueErrorType.ObjectRequiredProperty:
      return 'is required';
    case ValueErrorType.StringPattern:
      return `must match ${String(s.pattern)}`;
    case ValueErrorType.StringMaxLength:
      return `must be at most ${String(s.maxLength)} characters`;
    case ValueErrorType.ArrayMaxItems:
      return `must have at most ${String(s.maxItems)} items`;
    case ValueErrorType.ArrayMinItems:
      return `must have at least ${String(s.minItems)} item${s.minItems === 1 ? '' : 's'}`;
    default:
      return `must be ${describe(s as TSchema)}`;
  }
}

/** What a schema accepts, in words: `an integer in [1, 100]`, `a non-empty string`, `"ad"`. */
function describe(s: TSchema): string {
  switch (s[Kind]) {
    case 'Integer':
    case 'Number': {
      const noun = s[Kind] === 'Integer' ? 'an integer' : 'a number';
      if (s.minimum !== undefined && s.maximum !== undefined) return `${noun} in [${s.minimum}, ${s.maximum}]`;
      return s.minimum !== undefined ? `${noun} >= ${s.minimum}` : noun;
    }
    case 'String':
      return s.minLength ? 'a non-empty string' : 'a string';
    case 'Boolean':
      return 'a boolean';
    case 'Literal':
      return JSON.stringify(s.const);
    case 'Array':
      return 'an array';
    case 'Object':
    case 'Record':
      return 'an object';
    default:
      return 'valid';
  }
}
