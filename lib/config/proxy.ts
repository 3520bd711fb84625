import type convict from 'convict';
import { loadConvict, type LoadOptions } from './load.js';
import { registerSecret } from '../util/redact.js';
import { OutpostError } from '../util/errors.js';
import { parseSemVer, compareSemVer } from '../protocol/semver.js';

/** The integration-proxy's configuration (DESIGN "Proxy configuration"). */
export interface ProxyConfig {
  /** Listen address. Default `127.0.0.1` (env PROXY_HOST). */
  host: string;
  /** Listen port; 0 picks any free port. Default 8443 (env PROXY_PORT). */
  port: number;
  /** Job store: `sqlite:<file>` (default `sqlite:./data/proxy.db`) or `postgres://…` (env PROXY_STORE). */
  store: { url: string };
  /** Admin token for every pool, or null (env PROXY_ADMIN_TOKEN, sensitive). */
  adminToken: string | null;
  /** Lease duration handed to agents. Default 30 000 ms (env PROXY_LEASE_TTL_MS). */
  leaseTtlMs: number;
  /** Cap on a lease long-poll's wait. Default 30 000 ms (env PROXY_MAX_WAIT_MS). */
  maxWaitMs: number;
  /** An agent is online while seen within this window. Default 90 000 ms (env PROXY_PRESENCE_MS). */
  presenceMs: number;
  /**
   * Backstop period of lease expiry: each replica expires leases at their deadline (one timer at the
   * earliest), and this periodic pass also catches leases claimed or renewed on other replicas.
   * Default 5 000 ms (env PROXY_REAPER_INTERVAL_MS).
   */
  reaperIntervalMs: number;
  /** HTTPS when both files are set (env PROXY_TLS_CERT_FILE, PROXY_TLS_KEY_FILE). Default null (HTTP). */
  tls: { certFile: string | null; keyFile: string | null };
  /**
   * Log level (default `info`, env PROXY_LOG_LEVEL) and format (`json` default, env PROXY_LOG_FORMAT);
   * `file` (env PROXY_LOG_FILE, default null): also JSON lines there, rotated past `maxSizeBytes`
   * (env PROXY_LOG_MAX_SIZE_BYTES, default 10 MiB), keeping `maxFiles` (env PROXY_LOG_MAX_FILES, default 5).
   */
  log: { level: string; format: 'json' | 'pretty'; file?: string | null; maxSizeBytes?: number; maxFiles?: number };
  /** Largest accepted request body. Default 4 MiB (env PROXY_BODY_LIMIT_BYTES). */
  bodyLimitBytes: number;
  /** What one pool or token can make the proxy hold; each refusal is a 429 `rate_limited` or 413 `too_large`. */
  quotas: ProxyQuotas;
  /** How long finished jobs and offline agents are kept. */
  retention: ProxyRetention;
  /** A job still queued this long after enqueue ends `failed`/`expired`, unless it names its own. Default 24 h (env PROXY_QUEUE_TIMEOUT_MS). */
  queueTimeoutMs: number;
  /** Time a client has to send a whole request (headers and body); slower clients are dropped. Default 30 000 ms (env PROXY_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: number;
  /**
   * Accept job types this proxy does not know (for agents newer than the
   * proxy); their payload and resource are not checked. Default false: an
   * unknown type is 400 at enqueue (env PROXY_ACCEPT_UNKNOWN_TYPES).
   */
  acceptUnknownTypes: boolean;
  /** Agent versions the operator deploys (`agents.*`). */
  agents: ProxyAgentVersions;
}

/** Agent versions (config `agents.*`); strict semver `MAJOR.MINOR.PATCH[-prerelease]`, or null (not checked). */
export interface ProxyAgentVersions {
  /** The newest agent version: older agents are `outdated` and warn once an hour. Default null (env PROXY_AGENT_LATEST_VERSION). */
  latestVersion: string | null;
  /** The oldest agent version served: older or unparseable ones get 426 upgrade_required. Default null (env PROXY_AGENT_MIN_VERSION). */
  minVersion: string | null;
}

/** Quotas (config `quotas.*`). */
export interface ProxyQuotas {
  /** Agents remembered per pool; a new agentId beyond it replaces the oldest offline one, or gets 429. Default 1 000. */
  agentsPerPool: number;
  /** Parked lease polls per pool on one replica. Default 1 000. */
  parkedPollsPerPool: number;
  /** Output bytes stored for one job (413 beyond). Default 1 GiB. */
  outputBytesPerJob: number;
  /** Output bytes stored per pool, all jobs kept together (413 beyond). Default 8 GiB. */
  outputBytesPerPool: number;
  /** Queued jobs per pool (429 beyond). Default 100 000. */
  queuedJobsPerPool: number;
  /** Requests per token per `requestWindowMs` (429 beyond). Default 3 000. */
  requestsPerToken: number;
  /** The window of `requestsPerToken`. Default 1 000 ms. */
  requestWindowMs: number;
  /** Bytes of what an agent says about itself (hostname, version, resources) stored per agent (413 beyond). Default 8 KiB. */
  agentInfoBytes: number;
}

/** Retention (config `retention.*`). */
export interface ProxyRetention {
  /** Finished jobs and their output are deleted this long after they finished. Default 7 days. */
  finishedJobsMs: number;
  /** Agents not seen for this long are deleted. Default 7 days. */
  offlineAgentsMs: number;
  /** Period of the sweep (retention and queued-job expiry). Default 10 000 ms. */
  sweepIntervalMs: number;
  /** Rows deleted per statement: a sweep never holds the store for long. Default 1 000. */
  batchSize: number;
}

const positiveInt = (name: string) => (v: unknown) => {
  if (!Number.isInteger(v) || (v as number) < 1) throw new Error(`${name} must be a positive integer`);
};

const semverOrNull = (name: string) => (v: unknown) => {
  if (v !== null && v !== '' && (typeof v !== 'string' || !parseSemVer(v))) throw new Error(`${name} must be a version MAJOR.MINOR.PATCH[-prerelease]`);
};

const schema: convict.Schema<ProxyConfig> = {
  host: { doc: 'Listen address', format: String, default: '127.0.0.1', env: 'PROXY_HOST' },
  port: { doc: 'Listen port (0 = any free port)', format: 'port', default: 8443, env: 'PROXY_PORT' },
  store: {
    url: {
      doc: 'sqlite:<file> or postgres://…',
      format: (v: unknown) => {
        if (typeof v !== 'string' || !/^(sqlite:.+|postgres(ql)?:\/\/.+)$/.test(v)) {
          throw new Error('must be sqlite:<file> or postgres://…');
        }
      },
      default: 'sqlite:./data/proxy.db',
      env: 'PROXY_STORE',
      // A postgres URL may carry a password.
      sensitive: true,
    },
  },
  adminToken: {
    doc: 'Admin token for every pool',
    format: (v: unknown) => {
      if (v !== null && (typeof v !== 'string' || v.length < 16)) throw new Error('must be at least 16 characters');
    },
    default: null,
    env: 'PROXY_ADMIN_TOKEN',
    sensitive: true,
  },
  leaseTtlMs: { doc: 'Lease duration', format: positiveInt('leaseTtlMs'), default: 30_000, env: 'PROXY_LEASE_TTL_MS' },
  maxWaitMs: { doc: 'Long-poll cap', format: positiveInt('maxWaitMs'), default: 30_000, env: 'PROXY_MAX_WAIT_MS' },
  presenceMs: { doc: 'Presence window', format: positiveInt('presenceMs'), default: 90_000, env: 'PROXY_PRESENCE_MS' },
  reaperIntervalMs: {
    doc: 'Backstop period of lease expiry (expiry itself runs at each lease deadline)',
    format: positiveInt('reaperIntervalMs'),
    default: 5_000,
    env: 'PROXY_REAPER_INTERVAL_MS',
  },
  tls: {
    certFile: { doc: 'TLS certificate (PEM)', format: '*', default: null, env: 'PROXY_TLS_CERT_FILE' },
    keyFile: { doc: 'TLS private key (PEM)', format: '*', default: null, env: 'PROXY_TLS_KEY_FILE' },
  },
  log: {
    level: {
      doc: 'Log level',
      format: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'],
      default: 'info',
      env: 'PROXY_LOG_LEVEL',
    },
    format: { doc: 'Log format', format: ['json', 'pretty'], default: 'json', env: 'PROXY_LOG_FORMAT' },
    file: { doc: 'Also write JSON log lines to this file', format: '*', default: null, env: 'PROXY_LOG_FILE' },
    maxSizeBytes: { doc: 'Rotate the log file past this size', format: positiveInt('log.maxSizeBytes'), default: 10 * 1024 * 1024, env: 'PROXY_LOG_MAX_SIZE_BYTES' },
    maxFiles: { doc: 'Log files kept (the current one included)', format: positiveInt('log.maxFiles'), default: 5, env: 'PROXY_LOG_MAX_FILES' },
  },
  bodyLimitBytes: {
    doc: 'Largest request body',
    format: positiveInt('bodyLimitBytes'),
    default: 4 * 1024 * 1024,
    env: 'PROXY_BODY_LIMIT_BYTES',
  },
  quotas: {
    agentsPerPool: { doc: 'Agents per pool', format: positiveInt('quotas.agentsPerPool'), default: 1000, env: 'PROXY_QUOTA_AGENTS_PER_POOL' },
    parkedPollsPerPool: { doc: 'Parked polls per pool (per replica)', format: positiveInt('quotas.parkedPollsPerPool'), default: 1000, env: 'PROXY_QUOTA_PARKED_POLLS_PER_POOL' },
    outputBytesPerJob: { doc: 'Output bytes per job', format: positiveInt('quotas.outputBytesPerJob'), default: 1024 ** 3, env: 'PROXY_QUOTA_OUTPUT_BYTES_PER_JOB' },
    outputBytesPerPool: { doc: 'Output bytes per pool', format: positiveInt('quotas.outputBytesPerPool'), default: 8 * 1024 ** 3, env: 'PROXY_QUOTA_OUTPUT_BYTES_PER_POOL' },
    queuedJobsPerPool: { doc: 'Queued jobs per pool', format: positiveInt('quotas.queuedJobsPerPool'), default: 100_000, env: 'PROXY_QUOTA_QUEUED_JOBS_PER_POOL' },
    requestsPerToken: { doc: 'Requests per token per window', format: positiveInt('quotas.requestsPerToken'), default: 3000, env: 'PROXY_QUOTA_REQUESTS_PER_TOKEN' },
    requestWindowMs: { doc: 'Window of requestsPerToken', format: positiveInt('quotas.requestWindowMs'), default: 1000, env: 'PROXY_QUOTA_REQUEST_WINDOW_MS' },
    agentInfoBytes: { doc: 'Stored bytes of an agent description', format: positiveInt('quotas.agentInfoBytes'), default: 8192, env: 'PROXY_QUOTA_AGENT_INFO_BYTES' },
  },
  retention: {
    finishedJobsMs: { doc: 'Keep finished jobs', format: positiveInt('retention.finishedJobsMs'), default: 7 * 86_400_000, env: 'PROXY_RETENTION_FINISHED_JOBS_MS' },
    offlineAgentsMs: { doc: 'Keep offline agents', format: positiveInt('retention.offlineAgentsMs'), default: 7 * 86_400_000, env: 'PROXY_RETENTION_OFFLINE_AGENTS_MS' },
    sweepIntervalMs: { doc: 'Sweep period', format: positiveInt('retention.sweepIntervalMs'), default: 10_000, env: 'PROXY_RETENTION_SWEEP_INTERVAL_MS' },
    batchSize: { doc: 'Rows per delete', format: positiveInt('retention.batchSize'), default: 1000, env: 'PROXY_RETENTION_BATCH_SIZE' },
  },
  queueTimeoutMs: { doc: 'Default queue timeout of a job', format: positiveInt('queueTimeoutMs'), default: 86_400_000, env: 'PROXY_QUEUE_TIMEOUT_MS' },
  requestTimeoutMs: { doc: 'Time to receive a whole request', format: positiveInt('requestTimeoutMs'), default: 30_000, env: 'PROXY_REQUEST_TIMEOUT_MS' },
  acceptUnknownTypes: { doc: 'Accept job types this proxy does not know', format: Boolean, default: false, env: 'PROXY_ACCEPT_UNKNOWN_TYPES' },
  agents: {
    latestVersion: { doc: 'Newest agent version (semver)', format: semverOrNull('agents.latestVersion'), default: null, env: 'PROXY_AGENT_LATEST_VERSION' },
    minVersion: { doc: 'Oldest agent version served (semver)', format: semverOrNull('agents.minVersion'), default: null, env: 'PROXY_AGENT_MIN_VERSION' },
  },
};

/**
 * Loads the proxy config from `opts.file` (or PROXY_CONFIG), the environment
 * and overrides. The admin token and the store URL's password are registered
 * for redaction. Throws `config_error` naming the wrong key.
 */
export function loadProxyConfig(opts: LoadOptions = {}): ProxyConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.PROXY_CONFIG;
  const cfg = loadConvict(schema, { ...opts, env, file });
  if ((cfg.tls.certFile === null) !== (cfg.tls.keyFile === null)) {
    throw new OutpostError('config_error', 'invalid configuration: tls.certFile and tls.keyFile must be set together');
  }
  // An empty env value means "not set".
  if (cfg.agents.latestVersion === '') cfg.agents.latestVersion = null;
  if (cfg.agents.minVersion === '') cfg.agents.minVersion = null;
  const [min, latest] = [cfg.agents.minVersion, cfg.agents.latestVersion].map((v) => (v ? parseSemVer(v) : null));
  if (min && latest && compareSemVer(min, latest) > 0) {
    throw new OutpostError('config_error', 'invalid configuration: agents.minVersion must not be newer than agents.latestVersion');
  }
  registerSecret(cfg.adminToken);
  const pw = /^postgres(?:ql)?:\/\/[^:/@]*:([^@/]+)@/.exec(cfg.store.url)?.[1];
  if (pw) registerSecret(decodeURIComponent(pw));
  return cfg;
}
