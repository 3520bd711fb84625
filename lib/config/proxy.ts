import { loadConvict, type LoadOptions } from './load.js';
import { intKey, logSchema, type ConvictValues } from './pieces.js';
import { registerSecret } from '../util/redact.js';
import { OutpostError } from '../util/errors.js';
import { parseSemVer, compareSemVer } from '../protocol/semver.js';

const semverOrNull = (v: unknown) => {
  if (v !== null && v !== '' && (typeof v !== 'string' || !parseSemVer(v))) throw new Error('must be a version MAJOR.MINOR.PATCH[-prerelease]');
};

/** The convict schema (DESIGN "Proxy configuration"); ProxyConfig is derived from it. */
const schema = {
  /** Listen address. Default `127.0.0.1` (env PROXY_HOST). */
  host: { doc: 'Listen address', format: String, default: '127.0.0.1', env: 'PROXY_HOST' },
  /** Listen port; 0 picks any free port. Default 8443 (env PROXY_PORT). */
  port: { doc: 'Listen port (0 = any free port)', format: 'port', default: 8443, env: 'PROXY_PORT' },
  store: {
    /** Job store: `sqlite:<file>` (default `sqlite:./data/proxy.db`) or `postgres://…` (env PROXY_STORE). */
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
  /** Admin token for every pool, or null (env PROXY_ADMIN_TOKEN, sensitive). */
  adminToken: {
    doc: 'Admin token for every pool',
    format: (v: unknown) => {
      if (v !== null && (typeof v !== 'string' || v.length < 16)) throw new Error('must be at least 16 characters');
    },
    default: null as string | null,
    env: 'PROXY_ADMIN_TOKEN',
    sensitive: true,
  },
  /** Lease duration handed to agents. Default 30 000 ms (env PROXY_LEASE_TTL_MS). */
  leaseTtlMs: intKey('Lease duration', 30_000, 'PROXY_LEASE_TTL_MS'),
  /** Cap on a lease long-poll's wait. Default 30 000 ms (env PROXY_MAX_WAIT_MS). */
  maxWaitMs: intKey('Long-poll cap', 30_000, 'PROXY_MAX_WAIT_MS'),
  /** An agent is online while seen within this window. Default 90 000 ms (env PROXY_PRESENCE_MS). */
  presenceMs: intKey('Presence window', 90_000, 'PROXY_PRESENCE_MS'),
  /**
   * Backstop period of lease expiry: each replica expires leases at their deadline (one timer at the
   * earliest), and this periodic pass also catches leases claimed or renewed on other replicas.
   * Default 5 000 ms (env PROXY_REAPER_INTERVAL_MS).
   */
  reaperIntervalMs: intKey('Backstop period of lease expiry (expiry itself runs at each lease deadline)', 5_000, 'PROXY_REAPER_INTERVAL_MS'),
  /**
   * Period of the re-check of pools with parked polls, the backstop for a missed wake-up (a NOTIFY lost
   * with its connection). DESIGN "wake-up with PostgreSQL". Default 2 000 ms (env PROXY_WAKE_RECHECK_MS).
   */
  wakeRecheckMs: intKey('Re-check period of parked polls (backstop for a missed wake-up)', 2_000, 'PROXY_WAKE_RECHECK_MS', { max: 600_000 }),
  /**
   * How long an idle keep-alive connection is kept: above the 60 s idle cut of common load balancers,
   * so the balancer, not the proxy, closes it (DESIGN "proxy keep-alive"). Default 65 000 ms
   * (env PROXY_KEEP_ALIVE_TIMEOUT_MS).
   */
  keepAliveTimeoutMs: intKey('Idle keep-alive connections are kept this long', 65_000, 'PROXY_KEEP_ALIVE_TIMEOUT_MS', { max: 3_600_000 }),
  /** HTTPS when both files are set (env PROXY_TLS_CERT_FILE, PROXY_TLS_KEY_FILE). Default null (HTTP). */
  tls: {
    certFile: { doc: 'TLS certificate (PEM)', format: '*', default: null as string | null, env: 'PROXY_TLS_CERT_FILE' },
    keyFile: { doc: 'TLS private key (PEM)', format: '*', default: null as string | null, env: 'PROXY_TLS_KEY_FILE' },
  },
  /** Log level, format and file (env PROXY_LOG_*); lib/config/pieces.ts. */
  log: logSchema('PROXY'),
  /** Largest accepted request body. Default 4 MiB (env PROXY_BODY_LIMIT_BYTES). */
  bodyLimitBytes: intKey('Largest request body', 4 * 1024 * 1024, 'PROXY_BODY_LIMIT_BYTES'),
  /** What one pool or token can make the proxy hold; each refusal is a 429 `rate_limited` or 413 `too_large`. */
  quotas: {
    /** Agents remembered per pool; a new agentId beyond it replaces the oldest offline one, or gets 429. Default 1 000. */
    agentsPerPool: intKey('Agents per pool', 1000, 'PROXY_QUOTA_AGENTS_PER_POOL'),
    /** Parked lease polls per pool on one replica. Default 1 000. */
    parkedPollsPerPool: intKey('Parked polls per pool (per replica)', 1000, 'PROXY_QUOTA_PARKED_POLLS_PER_POOL'),
    /** Output bytes stored for one job (413 beyond). Default 1 GiB. */
    outputBytesPerJob: intKey('Output bytes per job', 1024 ** 3, 'PROXY_QUOTA_OUTPUT_BYTES_PER_JOB'),
    /** Output bytes stored per pool, all jobs kept together (413 beyond). Default 8 GiB. */
    outputBytesPerPool: intKey('Output bytes per pool', 8 * 1024 ** 3, 'PROXY_QUOTA_OUTPUT_BYTES_PER_POOL'),
    /** Queued jobs per pool (429 beyond). Default 100 000. */
    queuedJobsPerPool: intKey('Queued jobs per pool', 100_000, 'PROXY_QUOTA_QUEUED_JOBS_PER_POOL'),
    /** Requests per token per `requestWindowMs` (429 beyond). Default 3 000. */
    requestsPerToken: intKey('Requests per token per window', 3000, 'PROXY_QUOTA_REQUESTS_PER_TOKEN'),
    /** The window of `requestsPerToken`. Default 1 000 ms. */
    requestWindowMs: intKey('Window of requestsPerToken', 1000, 'PROXY_QUOTA_REQUEST_WINDOW_MS'),
    /** Bytes of what an agent says about itself (hostname, version, resources) stored per agent (413 beyond). Default 8 KiB. */
    agentInfoBytes: intKey('Stored bytes of an agent description', 8192, 'PROXY_QUOTA_AGENT_INFO_BYTES'),
  },
  /** How long finished jobs and offline agents are kept. */
  retention: {
    /** Finished jobs and their output are deleted this long after they finished. Default 7 days. */
    finishedJobsMs: intKey('Keep finished jobs', 7 * 86_400_000, 'PROXY_RETENTION_FINISHED_JOBS_MS'),
    /** Agents not seen for this long are deleted. Default 7 days. */
    offlineAgentsMs: intKey('Keep offline agents', 7 * 86_400_000, 'PROXY_RETENTION_OFFLINE_AGENTS_MS'),
    /** Period of the sweep (retention and queued-job expiry). Default 10 000 ms. */
    sweepIntervalMs: intKey('Sweep period', 10_000, 'PROXY_RETENTION_SWEEP_INTERVAL_MS'),
    /** Rows deleted per statement: a sweep never holds the store for long. Default 1 000. */
    batchSize: intKey('Rows per delete', 1000, 'PROXY_RETENTION_BATCH_SIZE'),
  },
  /** A job still queued this long after enqueue ends `failed`/`expired`, unless it names its own. Default 24 h (env PROXY_QUEUE_TIMEOUT_MS). */
  queueTimeoutMs: intKey('Default queue timeout of a job', 86_400_000, 'PROXY_QUEUE_TIMEOUT_MS'),
  /** Time a client has to send a whole request (headers and body); slower clients are dropped. Default 30 000 ms (env PROXY_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs: intKey('Time to receive a whole request', 30_000, 'PROXY_REQUEST_TIMEOUT_MS'),
  /**
   * Accept job types this proxy does not know (for agents newer than the
   * proxy); their payload and resource are not checked. Default false: an
   * unknown type is 400 at enqueue (env PROXY_ACCEPT_UNKNOWN_TYPES).
   */
  acceptUnknownTypes: { doc: 'Accept job types this proxy does not know', format: Boolean, default: false, env: 'PROXY_ACCEPT_UNKNOWN_TYPES' },
  /** Agent versions the operator deploys: strict semver `MAJOR.MINOR.PATCH[-prerelease]`, or null (not checked). */
  agents: {
    /** The newest agent version: older agents are `outdated` and warn once an hour. Default null (env PROXY_AGENT_LATEST_VERSION). */
    latestVersion: { doc: 'Newest agent version (semver)', format: semverOrNull, default: null as string | null, env: 'PROXY_AGENT_LATEST_VERSION' },
    /** The oldest agent version served: older or unparseable ones get 426 upgrade_required. Default null (env PROXY_AGENT_MIN_VERSION). */
    minVersion: { doc: 'Oldest agent version served (semver)', format: semverOrNull, default: null as string | null, env: 'PROXY_AGENT_MIN_VERSION' },
  },
};

/** The integration-proxy's configuration (DESIGN "Proxy configuration"), derived from the schema above. */
export type ProxyConfig = ConvictValues<typeof schema>;
/** Agent versions (config `agents.*`). */
export type ProxyAgentVersions = ProxyConfig['agents'];
/** Quotas (config `quotas.*`). */
export type ProxyQuotas = ProxyConfig['quotas'];
/** Retention (config `retention.*`). */
export type ProxyRetention = ProxyConfig['retention'];

/**
 * Loads the proxy config from `opts.file` (or PROXY_CONFIG), the environment
 * and overrides. The admin token and the store URL's password are registered
 * for redaction. Throws `config_error` naming the wrong key.
 */
export function loadProxyConfig(opts: LoadOptions = {}): ProxyConfig {
  const env = opts.env ?? process.env;
  const file = opts.file ?? env.PROXY_CONFIG;
  const cfg = loadConvict<ProxyConfig>(schema, { ...opts, env, file });
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
