import type convict from 'convict';
import { loadConvict, type LoadOptions } from './load.js';
import { registerSecret } from '../util/redact.js';
import { OutpostError } from '../util/errors.js';

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
  /** How often expired leases are returned to the queue. Default 5 000 ms (env PROXY_REAPER_INTERVAL_MS). */
  reaperIntervalMs: number;
  /** HTTPS when both files are set (env PROXY_TLS_CERT_FILE, PROXY_TLS_KEY_FILE). Default null (HTTP). */
  tls: { certFile: string | null; keyFile: string | null };
  /** Log level (default `info`, env PROXY_LOG_LEVEL) and format (`json` default, env PROXY_LOG_FORMAT). */
  log: { level: string; format: 'json' | 'pretty' };
  /** Largest accepted request body. Default 4 MiB (env PROXY_BODY_LIMIT_BYTES). */
  bodyLimitBytes: number;
}

const positiveInt = (name: string) => (v: unknown) => {
  if (!Number.isInteger(v) || (v as number) < 1) throw new Error(`${name} must be a positive integer`);
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
    doc: 'Reaper period',
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
  },
  bodyLimitBytes: {
    doc: 'Largest request body',
    format: positiveInt('bodyLimitBytes'),
    default: 4 * 1024 * 1024,
    env: 'PROXY_BODY_LIMIT_BYTES',
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
  registerSecret(cfg.adminToken);
  const pw = /^postgres(?:ql)?:\/\/[^:/@]*:([^@/]+)@/.exec(cfg.store.url)?.[1];
  if (pw) registerSecret(decodeURIComponent(pw));
  return cfg;
}
