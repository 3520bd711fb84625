import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadConvict, type LoadOptions } from './load.js';
import { readSecretFile, resolveSecret } from './secrets.js';
import { OutpostError } from '../util/errors.js';
import { registerSecret } from '../util/redact.js';

export type { LoadOptions } from './load.js';

/** One entry of `resources`: `kind` picks the connector factory, which validates the rest. */
export interface ResourceConfig {
  kind: string;
  [key: string]: unknown;
}

/** The agent's configuration after loading (DESIGN "Agent configuration"); the token is resolved. */
export interface AgentConfig {
  proxy: {
    /** Base URL of the integration-proxy, e.g. `https://proxy.example.com`. Required. */
    url: string;
    /** The pool's agent token, resolved from `proxy.token` (AGENT_TOKEN) or `proxy.tokenFile`. */
    token: string;
    /** File with the token (a secret mount). Exactly one of token/tokenFile. */
    tokenFile: string | null;
    /** Extra CA (PEM file) trusted for the proxy's certificate. Default null. */
    caFile: string | null;
    /** Long-poll hold asked of the proxy. Default 25 000 ms. */
    waitMs: number;
    /** Skips TLS verification (tests only; warned at every start). Default false. */
    insecureSkipTlsVerify: boolean;
  };
  /** Jobs run at once. Default 8. */
  concurrency: number;
  /** How long a drain lets running jobs finish before releasing them. Default 20 000 ms. */
  shutdownGraceMs: number;
  /** Health server address. Default 0.0.0.0:8080; port 0 = any free port. */
  health: { host: string; port: number };
  /**
   * Log level and format (`json` default, `pretty` for a terminal); `file`: also write JSON lines
   * there (default null), rotated past `maxSizeBytes` (default 10 MiB), keeping `maxFiles` (default 5).
   */
  log: { level: string; format: 'json' | 'pretty'; file?: string | null; maxSizeBytes?: number; maxFiles?: number };
  /** This process's id (AGENT_ID, e.g. the pod name). Default: random. */
  agentId: string;
  /** Named resources this agent can reach. Default none. */
  resources: Record<string, ResourceConfig>;
  /**
   * The pool's sealing key (X25519 private key, base64, from `bin/agent keygen`), shared by the pool's
   * agents like the token: it opens sealed secrets in payloads. Default none: a sealed value is refused.
   * Always set by loadAgentConfig; optional for configs built in code.
   */
  sealing?: {
    /** File with the private key (AGENT_SEALING_KEY_FILE). Default null. */
    privateKeyFile: string | null;
    /** The key read from `privateKeyFile` (registered for log redaction), or null. */
    privateKey: string | null;
  };
}

const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'];
const RESOURCE_NAME = /^[A-Za-z0-9._-]{1,128}$/;
const AGENT_ID = /^[A-Za-z0-9._:@-]{1,128}$/;

function checkResources(value: unknown): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('resources: must be an object of named resources');
  for (const [name, r] of Object.entries(value as Record<string, unknown>)) {
    if (!RESOURCE_NAME.test(name)) throw new Error(`resource name "${name}" must match ${RESOURCE_NAME.source}`);
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new Error(`resources.${name} must be an object`);
    const kind = (r as { kind?: unknown }).kind;
    if (typeof kind !== 'string' || !kind) throw new Error(`resources.${name}.kind: must be a non-empty string`);
    const unsealed = (r as { allowUnsealedSecrets?: unknown }).allowUnsealedSecrets;
    if (unsealed !== undefined && typeof unsealed !== 'boolean') throw new Error(`resources.${name}.allowUnsealedSecrets: must be a boolean`);
  }
}

function positiveInt(name: string, min: number, max: number) {
  return (v: unknown) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new Error(`${name} must be an integer in [${min}, ${max}]`);
  };
}

/** The convict schema; every key can also come from the environment. */
const schema = {
  proxy: {
    url: { doc: 'integration-proxy base URL', format: httpUrl, default: '', env: 'AGENT_PROXY_URL' },
    token: { doc: 'agent token of the pool', format: String, default: null as string | null, env: 'AGENT_TOKEN', sensitive: true, nullable: true },
    tokenFile: { doc: 'file holding the agent token', format: String, default: null as string | null, env: 'AGENT_TOKEN_FILE', nullable: true },
    caFile: { doc: 'extra CA (PEM) for the proxy certificate', format: String, default: null as string | null, env: 'AGENT_PROXY_CA_FILE', nullable: true },
    waitMs: { doc: 'long-poll hold', format: positiveInt('waitMs', 0, 600_000), default: 25_000, env: 'AGENT_WAIT_MS' },
    insecureSkipTlsVerify: { doc: 'skip TLS verification', format: Boolean, default: false, env: 'AGENT_INSECURE_SKIP_TLS_VERIFY' },
  },
  concurrency: { doc: 'jobs at once', format: positiveInt('concurrency', 1, 1000), default: 8, env: 'AGENT_CONCURRENCY' },
  shutdownGraceMs: { doc: 'drain grace', format: positiveInt('shutdownGraceMs', 0, 3_600_000), default: 20_000, env: 'AGENT_SHUTDOWN_GRACE_MS' },
  health: {
    host: { doc: 'health server host', format: String, default: '0.0.0.0', env: 'AGENT_HEALTH_HOST' },
    port: { doc: 'health server port (0 = any)', format: 'port', default: 8080, env: 'AGENT_HEALTH_PORT' },
  },
  log: {
    level: { doc: 'log level', format: LOG_LEVELS, default: 'info', env: 'AGENT_LOG_LEVEL' },
    format: { doc: 'json or pretty', format: ['json', 'pretty'], default: 'json', env: 'AGENT_LOG_FORMAT' },
    file: { doc: 'also write JSON log lines to this file', format: String, default: null as string | null, env: 'AGENT_LOG_FILE', nullable: true },
    maxSizeBytes: { doc: 'rotate the log file past this size', format: positiveInt('log.maxSizeBytes', 1024, 2 ** 40), default: 10 * 1024 * 1024, env: 'AGENT_LOG_MAX_SIZE_BYTES' },
    maxFiles: { doc: 'log files kept (the current one included)', format: positiveInt('log.maxFiles', 1, 1000), default: 5, env: 'AGENT_LOG_MAX_FILES' },
  },
  agentId: { doc: 'agent id (default random)', format: String, default: null as string | null, env: 'AGENT_ID', nullable: true },
  // `Object` makes convict treat the whole map as one value (kinds have their own keys).
  resources: { doc: 'named resources', format: Object, default: {} as Record<string, ResourceConfig>, env: 'AGENT_RESOURCES' },
  sealing: {
    privateKeyFile: { doc: "file holding the pool's sealing private key", format: String, default: null as string | null, env: 'AGENT_SEALING_KEY_FILE', nullable: true },
  },
};

function httpUrl(v: unknown): void {
  if (typeof v !== 'string' || !v) throw new Error('is required (an http:// or https:// URL)');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new Error('must be an http:// or https:// URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('must be an http:// or https:// URL');
  if (u.username || u.password) throw new Error('must not carry credentials (use proxy.token)');
}

type RawAgentConfig = Omit<AgentConfig, 'proxy' | 'agentId' | 'sealing'> & {
  sealing: { privateKeyFile: string | null };
  proxy: Omit<AgentConfig['proxy'], 'token'> & { token: string | null };
  agentId: string | null;
};

/**
 * Loads and validates the agent config from `--config`/AGENT_CONFIG, the
 * environment and overrides. Throws `config_error` naming the key and the
 * reason; the token never appears in a message. Resource entries are checked
 * here only for `kind`; their connector factory validates the rest.
 */
export function loadAgentConfig(opts: LoadOptions = {}): AgentConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? (env.AGENT_CONFIG || undefined);
  const raw = loadConvict<RawAgentConfig>(schema as never, { ...opts, env, file });
  if (raw.proxy.token && raw.proxy.tokenFile) {
    registerSecret(raw.proxy.token);
    throw new OutpostError('config_error', 'invalid configuration: proxy.token and proxy.tokenFile are both set; set exactly one');
  }
  try {
    checkResources(raw.resources);
  } catch (err) {
    throw new OutpostError('config_error', `invalid configuration: ${(err as Error).message}`);
  }
  const token = resolveSecret({ value: raw.proxy.token, file: raw.proxy.tokenFile, what: 'proxy.tokenFile' });
  if (!token) throw new OutpostError('config_error', 'invalid configuration: proxy.token: set proxy.token (AGENT_TOKEN) or proxy.tokenFile (AGENT_TOKEN_FILE)');
  if (raw.proxy.caFile) {
    try {
      readFileSync(raw.proxy.caFile);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'error';
      throw new OutpostError('config_error', `invalid configuration: proxy.caFile: cannot read ${raw.proxy.caFile}: ${code}`);
    }
  }
  const agentId = raw.agentId ?? `agent-${randomBytes(6).toString('hex')}`;
  if (!AGENT_ID.test(agentId)) throw new OutpostError('config_error', `invalid configuration: agentId: must match ${AGENT_ID.source}`);
  const privateKeyFile = raw.sealing.privateKeyFile || null;
  const privateKey = privateKeyFile ? readSecretFile(privateKeyFile, 'sealing.privateKeyFile').trim() : null;
  return { ...raw, proxy: { ...raw.proxy, token }, agentId, sealing: { privateKeyFile, privateKey } };
}
