import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { createSecureContext, rootCertificates } from 'node:tls';
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

/** A whole HTTP answer, body as text. */
export interface HttpAnswer {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** Thrown when a request outlives its `timeoutMs` (mapped to `unavailable` by the API). */
export class HttpTimeoutError extends Error {
  override readonly name = 'TimeoutError';
  readonly code = 'ETIMEDOUT';
  constructor(timeoutMs: number) {
    super(`Timeout awaiting request for ${timeoutMs}ms`);
  }
}

/**
 * The HTTP side of the agent: bare node:http(s) requests (no retries, no
 * redirects: the loop owns backoff) over keep-alive agents chosen per target
 * origin from HTTPS_PROXY/HTTP_PROXY/NO_PROXY (lower case wins, as in
 * proxy-from-env). Not got: at thousands of calls per second its per-request
 * option merging and stream wrapping cost about 4× a bare request in CPU.
 */
export class HttpTransport {
  private readonly direct: AgentPair;
  private readonly viaProxy = new Map<string, AgentPair>();
  /** Proxy URL ('' = direct) by target origin: proxy-from-env only looks at scheme, host and port. */
  private readonly routes = new Map<string, string>();
  private readonly tls: { rejectUnauthorized: boolean; secureContext?: ReturnType<typeof createSecureContext> };
  private readonly env: NodeJS.ProcessEnv;

  constructor(opts: HttpTransportOptions = {}) {
    this.env = opts.env ?? process.env;
    // Proxy passwords are secrets from the start, before any request or log line could carry one.
    for (const k of PROXY_VARS) registerProxyPassword(this.env[k]);
    // The CAs go in one secure context rather than as `ca`: Node's agent keys its socket pool
    // by a name that includes every `ca` string, rebuilt on each request (~200 KB with the roots).
    const ca = opts.caFile ? trustedCas(opts.caFile, this.env) : undefined;
    this.tls = { rejectUnauthorized: !opts.insecureSkipTlsVerify, ...(ca ? { secureContext: createSecureContext({ ca }) } : {}) };
    this.direct = { http: new HttpAgent(KEEP_ALIVE), https: new HttpsAgent({ ...KEEP_ALIVE, ...this.tls }) };
  }

  /**
   * POSTs `json` (already serialised) to `url` and reads the whole answer as
   * text, whatever its status. Rejects with the socket/TLS/proxy error, an
   * HttpTimeoutError after `timeoutMs`, or the signal's reason.
   */
  post(url: string, json: string, headers: Record<string, string>, timeoutMs: number, signal?: AbortSignal): Promise<HttpAnswer> {
    return new Promise<HttpAnswer>((resolve, reject) => {
      const https = url.startsWith('https:');
      const agents = this.agentsFor(url);
      const options = {
        method: 'POST',
        agent: https ? agents.https : agents.http,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) },
      };
      const req = https ? httpsRequest(url, options) : httpRequest(url, options);
      let settled = false;
      const finish = (err: unknown, answer?: HttpAnswer) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (err) {
          req.destroy();
          reject(err);
        } else resolve(answer!);
      };
      const onAbort = () => finish(signal!.reason);
      const timer = setTimeout(() => finish(new HttpTimeoutError(timeoutMs)), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      req.once('error', (err) => finish(err));
      req.once('response', (res: IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.once('error', (err) => finish(err));
        res.once('aborted', () => finish(Object.assign(new Error('the connection closed before the answer ended'), { code: 'ECONNRESET' })));
        res.once('end', () => finish(undefined, { statusCode: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.end(json);
    });
  }

  /** The agents for a request to `url`: through the forward proxy unless NO_PROXY says direct. */
  agentsFor(url: string): AgentPair {
    const proxy = this.routeFor(url);
    if (!proxy) return this.direct;
    let pair = this.viaProxy.get(proxy);
    if (!pair) {
      registerProxyPassword(proxy);
      pair = {
        http: new HttpProxyAgent({ ...KEEP_ALIVE, proxy }),
        https: new HttpsProxyAgent({ ...KEEP_ALIVE, ...this.tls, proxy }),
      };
      this.viaProxy.set(proxy, pair);
    }
    return pair;
  }

  private routeFor(url: string): string {
    // The origin is everything before the path: the API's URLs all start with "scheme://host[:port]/".
    const slash = url.indexOf('/', url.indexOf('//') + 2);
    const origin = slash < 0 ? url : url.slice(0, slash);
    let proxy = this.routes.get(origin);
    if (proxy === undefined) {
      proxy = proxyFor(url, this.env);
      this.routes.set(origin, proxy);
    }
    return proxy;
  }

  /** ` via forward proxy host:port` when `url` goes through one (no credentials), else ''. For error messages. */
  routeLabel(url: string): string {
    const proxy = this.routeFor(url);
    if (!proxy) return '';
    try {
      return ` via forward proxy ${new URL(proxy).host}`;
    } catch {
      return ' via a forward proxy';
    }
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
    this.routes.clear();
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
 * proxy-from-env reads process.env; an injected env (tests, `check`) is
 * applied for the duration of the synchronous call only.
 */
function proxyFor(url: string, env: NodeJS.ProcessEnv): string {
  if (env === process.env) return getProxyForUrl(url);
  const keys = [...PROXY_VARS, 'NO_PROXY', 'no_proxy'];
  const saved = keys.map((k) => [k, process.env[k]] as const);
  try {
    for (const k of keys) {
      if (env[k] === undefined) delete process.env[k];
      else process.env[k] = env[k];
    }
    return getProxyForUrl(url);
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
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
