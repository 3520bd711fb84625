import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { HttpProxyAgent, HttpsProxyAgent } from 'hpagent';
import { getProxyForUrl } from 'proxy-from-env';
import { registerSecret } from '../util/redact.js';

/** Options of the agent's HTTP transport. */
export interface HttpTransportOptions {
  /** PEM file with an extra CA for the integration-proxy. Default none (system roots + NODE_EXTRA_CA_CERTS). */
  caFile?: string | null;
  /** Skips TLS verification (tests only). Default false. */
  insecureSkipTlsVerify?: boolean;
  /** Environment read for HTTPS_PROXY/HTTP_PROXY/NO_PROXY/NODE_EXTRA_CA_CERTS. Default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

interface AgentPair {
  http: HttpAgent;
  https: HttpsAgent;
}

/** Keep-alive sockets survive the idle time between polls; the proxy's keepAliveTimeout is 65 s. */
const KEEP_ALIVE = { keepAlive: true, keepAliveMsecs: 1000, maxFreeSockets: 16, scheduling: 'lifo' as const };

/**
 * The HTTP side of the agent: keep-alive agents chosen per target URL from
 * HTTPS_PROXY/HTTP_PROXY/NO_PROXY (lower case wins, as in proxy-from-env),
 * with the TLS settings on them; requests go out through lib/agent/http-post.ts
 * (no retries there: the loop owns backoff).
 */
export class HttpTransport {
  private readonly direct: AgentPair;
  private readonly viaProxy = new Map<string, AgentPair>();
  /** The forward proxy ('' for direct) per target origin: decided once, not on every request. */
  private readonly routes = new Map<string, string>();
  private readonly ca: string[] | undefined;
  private readonly rejectUnauthorized: boolean;
  private readonly env: NodeJS.ProcessEnv;

  constructor(opts: HttpTransportOptions = {}) {
    this.env = opts.env ?? process.env;
    // Proxy passwords are secrets from the start, before any request or log line could carry one.
    for (const k of PROXY_VARS) registerProxyPassword(this.env[k]);
    this.rejectUnauthorized = !opts.insecureSkipTlsVerify;
    this.ca = opts.caFile ? trustedCas(opts.caFile, this.env) : undefined;
    const tls = { rejectUnauthorized: this.rejectUnauthorized, ...(this.ca ? { ca: this.ca } : {}) };
    this.direct = { http: new HttpAgent(KEEP_ALIVE), https: new HttpsAgent({ ...KEEP_ALIVE, ...tls }) };
  }

  /** The agent a request to `url` goes out on (its scheme's, direct or through the forward proxy). */
  agentFor(url: string): HttpAgent | HttpsAgent {
    const pair = this.agentsFor(url);
    return url.startsWith('https:') ? pair.https : pair.http;
  }

  /**
   * The agents for a request to `url`: through the forward proxy unless NO_PROXY says direct.
   * The environment is read at the first request to each origin (the agent's does not change under it).
   */
  agentsFor(url: string): AgentPair {
    const proxy = this.route(url);
    if (!proxy) return this.direct;
    let pair = this.viaProxy.get(proxy);
    if (!pair) {
      registerProxyPassword(proxy);
      const tls = { rejectUnauthorized: this.rejectUnauthorized, ...(this.ca ? { ca: this.ca } : {}) };
      pair = {
        http: new HttpProxyAgent({ ...KEEP_ALIVE, proxy }),
        https: new HttpsProxyAgent({ ...KEEP_ALIVE, ...tls, proxy }),
      };
      this.viaProxy.set(proxy, pair);
    }
    return pair;
  }

  /** ` via forward proxy host:port` when `url` goes through one (no credentials), else ''. For error messages. */
  routeLabel(url: string): string {
    const proxy = this.route(url);
    if (!proxy) return '';
    try {
      return ` via forward proxy ${new URL(proxy).host}`;
    } catch {
      return ' via a forward proxy';
    }
  }

  /** proxyFor, cached per origin: proxy-from-env parses the environment on every call (seen in profiles of the hot path). */
  private route(url: string): string {
    const slash = url.indexOf('/', url.indexOf('//') + 2);
    const origin = slash < 0 ? url : url.slice(0, slash);
    let proxy = this.routes.get(origin);
    if (proxy === undefined) {
      proxy = proxyFor(url, this.env);
      this.routes.set(origin, proxy);
    }
    return proxy;
  }

  /** Closes every pooled socket (at shutdown). */
  destroy(): void {
    this.direct.http.destroy();
    this.direct.https.destroy();
    for (const p of this.viaProxy.values()) {
      p.http.destroy();
      p.https.destroy();
    }
    this.viaProxy.clear();
  }
}

const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy', 'ALL_PROXY', 'all_proxy'];

function registerProxyPassword(url: string | undefined): void {
  if (!url) return;
  try {
    const u = new URL(url);
    if (u.password) registerSecret(decodeURIComponent(u.password));
  } catch {
    // Not a URL: proxy-from-env will not use it either.
  }
}

/**
 * The forward proxy `url` goes through (HTTPS_PROXY/HTTP_PROXY/NO_PROXY, lower
 * case wins), or '' for direct. proxy-from-env reads process.env; an injected
 * env (tests, `check`) is applied for the duration of the synchronous call only.
 */
export function proxyFor(url: string, env: NodeJS.ProcessEnv = process.env): string {
  if (env === process.env) return getProxyForUrl(url);
  const keys = [...PROXY_VARS, 'NO_PROXY', 'no_proxy'];
  const saved = keys.map((k) => [k, process.env[k]] as const);
  try {
    for (const k of keys) {
      if (env[k] === undefined) Reflect.deleteProperty(process.env, k);
      else process.env[k] = env[k];
    }
    return getProxyForUrl(url);
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) Reflect.deleteProperty(process.env, k);
      else process.env[k] = v;
    }
  }
}

/**
 * An explicit `ca` replaces Node's default store, so the system roots and
 * NODE_EXTRA_CA_CERTS are added back: trusting a private CA must not
 * untrust the public ones.
 */
function trustedCas(caFile: string, env: NodeJS.ProcessEnv): string[] {
  const cas = [...rootCertificates, readFileSync(caFile, 'utf8')];
  const extra = env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      cas.push(readFileSync(extra, 'utf8'));
    } catch {
      // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS; do the same by ignoring it.
    }
  }
  return cas;
}
