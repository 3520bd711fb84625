import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import convict from 'convict';
import { loadConvict, type LoadOptions } from './load.js';
import { intKey, logSchema, numberIn, type ConvictValues } from './pieces.js';
import { readSecretFile, resolveSecret } from './secrets.js';
import { OutpostError } from '../util/errors.js';
import { registerSecret } from '../util/redact.js';

export type { LoadOptions } from './load.js';

/** One entry of `resources`: `kind` picks the connector factory, which validates the rest. */
export interface ResourceConfig {
  kind: string;
  [key: string]: unknown;
}

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

/** The convict schema (DESIGN "Agent configuration"); every key can also come from the environment. AgentConfig is derived from it. */
const schema = {
  proxy: {
    /** Base URL of the integration-proxy, e.g. `https://proxy.example.com`. Required. */
    url: { doc: 'integration-proxy base URL', format: httpUrl, default: '', env: 'AGENT_PROXY_URL' },
    /** The pool's agent token (AGENT_TOKEN); exactly one of token/tokenFile. Resolved by loadAgentConfig. */
    token: { doc: 'agent token of the pool', format: String, default: null as string | null, env: 'AGENT_TOKEN', sensitive: true, nullable: true },
    /** File with the token (a secret mount). Exactly one of token/tokenFile. */
    tokenFile: { doc: 'file holding the agent token', format: String, default: null as string | null, env: 'AGENT_TOKEN_FILE', nullable: true },
    /** Extra CA (PEM file) trusted for the proxy's certificate. Default null. */
    caFile: { doc: 'extra CA (PEM) for the proxy certificate', format: String, default: null as string | null, env: 'AGENT_PROXY_CA_FILE', nullable: true },
    /** Long-poll hold asked of the proxy. Default 25 000 ms. */
    waitMs: intKey('long-poll hold', 25_000, 'AGENT_WAIT_MS', { min: 0, max: 600_000 }),
    /**
     * Added to `waitMs` for the lease call's HTTP timeout, so that the hold ends on the proxy's side
     * first (DESIGN "agent HTTP timeout for lease"). Default 10 000 ms.
     */
    leaseTimeoutSlackMs: intKey('lease call timeout beyond waitMs', 10_000, 'AGENT_LEASE_TIMEOUT_SLACK_MS', { min: 1000, max: 600_000 }),
    /** Skips TLS verification (tests only; warned at every start). Default false. */
    insecureSkipTlsVerify: { doc: 'skip TLS verification', format: Boolean, default: false, env: 'AGENT_INSECURE_SKIP_TLS_VERIFY' },
  },
  /** Jobs run at once. Default 8. */
  concurrency: intKey('jobs at once', 8, 'AGENT_CONCURRENCY', { max: 1000 }),
  /** How long a drain lets running jobs finish before releasing them. Default 20 000 ms. */
  shutdownGraceMs: intKey('drain grace', 20_000, 'AGENT_SHUTDOWN_GRACE_MS', { min: 0, max: 3_600_000 }),
  /**
   * `/readyz` is 200 while the agent has talked to the integration-proxy within this window
   * (DESIGN "presence window"; keep it equal to the proxy's `presenceMs`). Default 90 000 ms.
   */
  presenceMs: intKey('readiness: talked to the proxy within this window', 90_000, 'AGENT_PRESENCE_MS', { min: 1000, max: 86_400_000 }),
  /** Lease renewal (DESIGN "heartbeat"): one call for all held leases every TTL × fraction, ± jitter. */
  heartbeat: {
    /** Heartbeat period as a fraction of the lease TTL. Default 1/3: two lost heartbeats are survivable. */
    fraction: { doc: 'heartbeat period / lease TTL', format: numberIn(0.05, 0.5), default: 1 / 3, env: 'AGENT_HEARTBEAT_FRACTION' },
    /** ± jitter on the heartbeat period, as a fraction of it. Default 0.1. */
    jitter: { doc: 'heartbeat jitter (fraction of the period)', format: numberIn(0, 0.5), default: 0.1, env: 'AGENT_HEARTBEAT_JITTER' },
  },
  /** Health server address. Default 0.0.0.0:8080; port 0 = any free port. */
  health: {
    host: { doc: 'health server host', format: String, default: '0.0.0.0', env: 'AGENT_HEALTH_HOST' },
    port: { doc: 'health server port (0 = any)', format: 'port', default: 8080, env: 'AGENT_HEALTH_PORT' },
  },
  /**
   * Log level and format (`json` default, `pretty` for a terminal); `file`: also write JSON lines
   * there (default null), rotated past `maxSizeBytes` (default 10 MiB), keeping `maxFiles` (default 5).
   */
  log: logSchema('AGENT'),
  /** This process's id (AGENT_ID, e.g. the pod name). Default: random. */
  agentId: { doc: 'agent id (default random)', format: String, default: null as string | null, env: 'AGENT_ID', nullable: true },
  /** Named resources this agent can reach. Default none. */
  // `Object` makes convict treat the whole map as one value (kinds have their own keys).
  resources: { doc: 'named resources', format: Object, default: {} as Record<string, ResourceConfig>, env: 'AGENT_RESOURCES' },
  sealing: {
    /** File with the pool's sealing private key (AGENT_SEALING_KEY_FILE). Default null. */
    privateKeyFile: { doc: "file holding the pool's sealing private key", format: String, default: null as string | null, env: 'AGENT_SEALING_KEY_FILE', nullable: true },
  },
};

/** What convict loads: the schema's values, derived from it. */
export type RawAgentConfig = ConvictValues<typeof schema>;

/** The agent's configuration after loading (DESIGN "Agent configuration"): the schema's values, the token and id resolved. */
export type AgentConfig = Omit<RawAgentConfig, 'proxy' | 'agentId' | 'sealing'> & {
  proxy: Omit<RawAgentConfig['proxy'], 'token'> & {
    /** The pool's agent token, resolved from `proxy.token` (AGENT_TOKEN) or `proxy.tokenFile`. */
    token: string;
  };
  /** This process's id (AGENT_ID, e.g. the pod name). Default: `agent-` + 12 random hex digits. */
  agentId: string;
  /**
   * The pool's sealing key (X25519 private key, base64, from `bin/agent keygen`), shared by the pool's
   * agents like the token: it opens sealed secrets in payloads. Default none: a sealed value is refused.
   * Always set by loadAgentConfig; optional for configs built in code.
   */
  sealing?: RawAgentConfig['sealing'] & {
    /** The key read from `privateKeyFile` (registered for log redaction), or null. */
    privateKey: string | null;
  };
};

/** The schema's defaults, but the optional `sealing` (for configs built in code, such as tests'). */
export function agentConfigDefaults(): Omit<RawAgentConfig, 'sealing'> {
  const { sealing: _, ...defaults } = convict<RawAgentConfig>(schema, { env: {}, args: [] }).getProperties();
  return defaults;
}

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

/**
 * Loads and validates the agent config from `--config`/AGENT_CONFIG, the
 * environment and overrides. Throws `config_error` naming the key and the
 * reason; the token never appears in a message. Resource entries are checked
 * here only for `kind`; their connector factory validates the rest.
 */
export function loadAgentConfig(opts: LoadOptions = {}): AgentConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? (env.AGENT_CONFIG || undefined);
  const raw = loadConvict<RawAgentConfig>(schema, { ...opts, env, file });
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
