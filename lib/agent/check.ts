import { statSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as tlsConnect, type PeerCertificate, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import type { AgentConfig } from '../config/agent.js';
import type { Connector } from '../connectors/types.js';
import { createLogger } from '../log/index.js';
import { systemClock, timeoutSignal } from '../util/clock.js';
import { OutpostError, toWireError } from '../util/errors.js';
import { buildResourceConnectors, type AgentDeps } from './agent.js';
import { ProxyApi } from './api.js';
import { closeConnectors } from './connectors.js';
import { HttpTransport, proxyFor } from './http.js';

/**
 * `bin/agent check`. This module is the composition root of the check
 * command (as agent.ts is of `start`): it builds its own transport, API
 * client and connectors, uses them once and closes them. Every failing or
 * suspicious row says how to fix it (`hint`).
 */

/** One line of `bin/agent check` (also its `--json` form). */
export interface CheckRow {
  target: string;
  ok: boolean;
  /** ok; warn: works, but unsafe or about to break (exit code stays 0); fail: does not work (exit 1). */
  level: 'ok' | 'warn' | 'fail';
  latencyMs: number;
  detail: string;
  /** What to change, for warn and fail rows. */
  hint?: string;
}

/** Node's codes for a certificate the agent does not trust (or that does not fit). */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE',
]);
/** A TLS client that got a plain-HTTP answer (OpenSSL: "wrong version number" / "packet length too long"). */
const PLAIN_HTTP_ANSWER = /EPROTO|WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|wrong version number|record layer failure/i;
/** A plain-HTTP client that got TLS bytes back, or a reset (a TLS server resets on HTTP). */
const TLS_ANSWER = /ECONNRESET|HPE_|Parse Error|socket hang up|EPIPE/i;

const LOOPBACK = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\]|::1)$/i;

/**
 * Checks config warnings (clear-text token, TLS verification off, secret
 * files others can read), the proxy (an empty heartbeat: authenticates
 * without taking work, through the forward proxy if one is set), and each
 * resource through its connector's `checkResource`.
 */
export async function checkAgent(config: AgentConfig, deps: AgentDeps = {}, timeoutMs = 10_000): Promise<CheckRow[]> {
  const clock = deps.clock ?? systemClock;
  const log = deps.log ?? createLogger({ level: 'error', format: config.log.format });
  const since = (t: number) => Math.round(clock.monotonicMs() - t);
  const rows: CheckRow[] = [...configWarnings(config)];
  const transport = new HttpTransport({ caFile: config.proxy.caFile, insecureSkipTlsVerify: config.proxy.insecureSkipTlsVerify, env: deps.env });
  const api = new ProxyApi(transport, { baseUrl: config.proxy.url, token: config.proxy.token, callTimeoutMs: timeoutMs });
  const route = transport.routeLabel(config.proxy.url);
  const t0 = clock.monotonicMs();
  const heartbeatTimeout = timeoutSignal(clock, timeoutMs, 'the heartbeat');
  try {
    await api.heartbeat({ agentId: config.agentId, leases: [] }, heartbeatTimeout.signal);
    rows.push({ target: `proxy ${config.proxy.url}`, ok: true, level: 'ok', latencyMs: since(t0), detail: `reachable, token accepted${route}` });
  } catch (err) {
    const latencyMs = since(t0);
    const { detail, hint } = await diagnoseProxy(config, err, proxyFor(config.proxy.url, deps.env), timeoutMs);
    rows.push({ target: `proxy ${config.proxy.url}`, ok: false, level: 'fail', latencyMs, detail: `${detail}${route}`, hint });
  } finally {
    heartbeatTimeout.clear();
    transport.destroy();
  }
  let connectors = new Map<string, Connector>();
  const r0 = clock.monotonicMs();
  try {
    connectors = await buildResourceConnectors(config, deps, log, clock);
    rows.push({ target: 'config resources', ok: true, level: 'ok', latencyMs: since(r0), detail: `${connectors.size} resource(s)` });
  } catch (err) {
    const w = toWireError(err);
    rows.push({ target: 'config resources', ok: false, level: 'fail', latencyMs: since(r0), detail: `${w.code}: ${w.message}`, hint: 'fix the named key in the resources section (config/README.md lists each kind\'s keys)' });
  }
  for (const [name, c] of connectors) {
    const s0 = clock.monotonicMs();
    const checkTimeout = timeoutSignal(clock, timeoutMs, `checking resource ${name}`);
    try {
      const ctx = { signal: checkTimeout.signal, log, writePage: () => Promise.resolve() };
      const r = await c.checkResource({}, ctx);
      if (!r.ok) throw new OutpostError('unreachable', JSON.stringify(r.details).slice(0, 300));
      rows.push({ target: `resource ${name} (${c.kind})`, ok: true, level: 'ok', latencyMs: since(s0), detail: 'ok' });
    } catch (err) {
      const w = toWireError(err);
      rows.push({ target: `resource ${name} (${c.kind})`, ok: false, level: 'fail', latencyMs: since(s0), detail: `${w.code}: ${w.message}`, hint: resourceHint(w.code, name) });
    } finally {
      checkTimeout.clear();
    }
  }
  await closeConnectors(connectors, () => undefined);
  return rows;
}

/** Static findings: each a `warn` row (they work, but should not be left so). */
export function configWarnings(config: AgentConfig, platform: NodeJS.Platform = process.platform): CheckRow[] {
  const rows: CheckRow[] = [];
  const warn = (target: string, detail: string, hint: string) => rows.push({ target, ok: true, level: 'warn', latencyMs: 0, detail, hint });
  const url = new URL(config.proxy.url);
  if (url.protocol === 'http:' && !LOOPBACK.test(url.hostname)) {
    warn('proxy.url', `http:// to ${url.host}: the agent token and every job travel in clear`, 'use https:// (run the integration-proxy with PROXY_TLS_CERT_FILE and PROXY_TLS_KEY_FILE)');
  }
  if (config.proxy.insecureSkipTlsVerify) {
    warn('proxy.insecureSkipTlsVerify', 'TLS verification of the integration-proxy is OFF: anyone on the path can read the token', 'set proxy.caFile (AGENT_PROXY_CA_FILE) to the CA of the proxy certificate and remove insecureSkipTlsVerify');
  }
  // POSIX modes only: on Windows the ACL decides and stat's mode says nothing about it.
  if (platform !== 'win32') {
    for (const [key, file] of secretFiles(config)) {
      let mode: number;
      try {
        mode = statSync(file).mode;
      } catch {
        continue; // unreadable files fail the load (token) or their resource row
      }
      if (mode & 0o077) {
        warn(key, `${file} is readable by ${mode & 0o070 ? 'group' : ''}${mode & 0o070 && mode & 0o007 ? ' and ' : ''}${mode & 0o007 ? 'others' : ''} (mode ${(mode & 0o777).toString(8).padStart(4, '0')})`, `chmod 600 ${file} (owned by the user the agent runs as)`);
      }
    }
  }
  return rows;
}

/** Config keys that name a secret file: proxy.tokenFile and every `*File` key of a resource or section but CA/certificate files. */
function secretFiles(config: AgentConfig): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const walk = (value: unknown, path: string, depth: number) => {
    if (depth > 6 || value === null || typeof value !== 'object') return;
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const p = path ? `${path}.${k}` : k;
      if (typeof v === 'string' && k.endsWith('File') && !/^(ca|cert|certificate|trustedCa)File$/i.test(k)) out.push([p, v]);
      else walk(v, p, depth + 1);
    }
  };
  walk(config, '', 0);
  return out;
}

/** What went wrong reaching the proxy, and what to change. */
async function diagnoseProxy(config: AgentConfig, err: unknown, forwardProxy: string, timeoutMs: number): Promise<{ detail: string; hint?: string }> {
  const w = toWireError(err);
  const cause = causeOf(err);
  const code = cause.code ?? '';
  const url = new URL(config.proxy.url);
  const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
  const where = `${url.hostname}:${port}`;
  const probe = () => probeTls(url.hostname, port, forwardProxy, Math.min(timeoutMs, 5000));
  if (url.protocol === 'https:' && UNTRUSTED.has(code)) {
    const cert = (await probe()).cert;
    const names = cert ? `certificate of ${where}: subject ${dn(cert.subject)}, issued by ${dn(cert.issuer)}` : `certificate of ${where}`;
    return {
      detail: `not trusted (${code}): ${names}`,
      hint: `trust its issuer${cert ? ` (${dn(cert.issuer)})` : ''}: set proxy.caFile (AGENT_PROXY_CA_FILE) to a PEM file with that CA certificate, or add it to NODE_EXTRA_CA_CERTS`,
    };
  }
  if (url.protocol === 'https:' && code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    const cert = (await probe()).cert;
    return {
      detail: `the certificate of ${where} is not for ${url.hostname}${cert ? `: subject ${dn(cert.subject)}, names ${cert.subjectaltname ?? 'none'}` : ''}`,
      hint: 'use one of the certificate\'s names in proxy.url, or reissue the certificate for this name',
    };
  }
  if (url.protocol === 'https:' && (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID')) {
    const cert = (await probe()).cert;
    return { detail: `the certificate of ${where} is ${code === 'CERT_HAS_EXPIRED' ? 'expired' : 'not valid yet'}${cert ? ` (valid ${cert.valid_from} to ${cert.valid_to})` : ''}`, hint: 'renew the proxy certificate (PROXY_TLS_CERT_FILE) or fix this host\'s clock' };
  }
  if (url.protocol === 'https:' && (PLAIN_HTTP_ANSWER.test(code) || PLAIN_HTTP_ANSWER.test(cause.message ?? ''))) {
    return {
      detail: `${code || w.code}: this port speaks plain HTTP, not HTTPS (${where})`,
      hint: `use http://${url.host} in proxy.url only on a trusted loopback network; better, enable TLS on the integration-proxy (PROXY_TLS_CERT_FILE, PROXY_TLS_KEY_FILE)`,
    };
  }
  if (url.protocol === 'http:' && (TLS_ANSWER.test(code) || TLS_ANSWER.test(cause.message ?? '') || w.code === 'internal')) {
    if ((await probe()).tls) {
      return { detail: `${code || w.code}: this port speaks HTTPS, not plain HTTP (${where})`, hint: `use https://${url.host} in proxy.url (and proxy.caFile if its CA is private)` };
    }
  }
  return { detail: `${w.code}: ${w.message}`, hint: proxyHint(w.code, code, where, forwardProxy) };
}

function proxyHint(wireCode: string, code: string, where: string, forwardProxy: string): string | undefined {
  if (wireCode === 'unauthorized') return 'the token is wrong, revoked or expired: set proxy.tokenFile (AGENT_TOKEN_FILE) to a current agent token of the pool (integration-proxy token create)';
  if (wireCode === 'forbidden') return 'this is not an agent token: use a token created with role agent for the pool';
  if (wireCode === 'proxy_error') return 'the forward proxy refused: check the credentials in HTTPS_PROXY, or NO_PROXY for a proxy that should be reached directly';
  if (code === 'ECONNREFUSED') return `nothing listens on ${where}${forwardProxy ? ' (as seen from the forward proxy)' : ''}: check proxy.url and that the integration-proxy runs`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `the name in proxy.url does not resolve here${forwardProxy ? ' (or at the forward proxy)' : ''}`;
  if (wireCode === 'unavailable') return `check proxy.url, the network path to ${where}${forwardProxy ? ' and the forward proxy' : ''}`;
  return undefined;
}

function resourceHint(code: string, name: string): string {
  if (code === 'invalid_credentials') return `check the bind/login user and its password file of resources.${name}`;
  if (code === 'tls_error') return `trust the server's CA in resources.${name} (its caFile) or check the server name`;
  if (code === 'config_error') return `fix the named key of resources.${name}`;
  return `check that resources.${name} is reachable from this host (address, port, firewall)`;
}

/** The transport error sits under the OutpostError (as its cause); the innermost one with a code says what happened. */
function causeOf(err: unknown): { code?: string; message?: string } {
  let e = err as { code?: string; message?: string; cause?: unknown } | undefined;
  let best: { code?: string; message?: string } = {};
  for (let i = 0; e && i < 5; i++, e = e.cause as typeof e) {
    if (e instanceof OutpostError) continue;
    if (e.code || e.message) best = { code: e.code ?? best.code, message: e.message ?? best.message };
  }
  return best;
}

function dn(name: PeerCertificate['subject'] | undefined): string {
  if (!name) return '(none)';
  const order = ['CN', 'OU', 'O', 'L', 'ST', 'C'];
  const parts = order.filter((k) => (name as unknown as Record<string, unknown>)[k]).map((k) => `${k}=${String((name as unknown as Record<string, unknown>)[k])}`);
  return parts.length ? parts.join(', ') : '(empty)';
}

/**
 * A TLS handshake to host:port that verifies nothing, only to read what the
 * port speaks and which certificate it shows (after the real, verifying call
 * failed). Through the forward proxy's CONNECT when one is in use.
 */
async function probeTls(host: string, port: number, forwardProxy: string, timeoutMs: number): Promise<{ tls: boolean; cert?: PeerCertificate }> {
  let socket: Socket | undefined;
  try {
    socket = forwardProxy ? await connectTunnel(forwardProxy, host, port, timeoutMs) : undefined;
    const tls: TLSSocket = tlsConnect({ host, port, socket, servername: LOOPBACK.test(host) || /^[\d.:]+$/.test(host) ? undefined : host, rejectUnauthorized: false });
    return await new Promise((resolve) => {
      const timer = setTimeout(() => done({ tls: false }), timeoutMs);
      const done = (r: { tls: boolean; cert?: PeerCertificate }) => {
        clearTimeout(timer);
        tls.destroy();
        resolve(r);
      };
      tls.once('secureConnect', () => {
        // null once the socket is destroyed (Node's docs), which @types/node does not say.
        const cert = tls.getPeerCertificate() as PeerCertificate | null;
        done({ tls: true, cert: cert && Object.keys(cert).length ? cert : undefined });
      });
      tls.once('error', () => done({ tls: false }));
    });
  } catch {
    return { tls: false };
  } finally {
    socket?.destroy();
  }
}

/** A CONNECT tunnel through the forward proxy (its credentials from its URL). */
function connectTunnel(proxy: string, host: string, port: number, timeoutMs: number): Promise<Socket> {
  const p = new URL(proxy);
  const headers: Record<string, string> = { host: `${host}:${port}` };
  if (p.username) headers['proxy-authorization'] = `Basic ${Buffer.from(`${decodeURIComponent(p.username)}:${decodeURIComponent(p.password)}`).toString('base64')}`;
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: p.hostname, port: Number(p.port || 80), method: 'CONNECT', path: `${host}:${port}`, headers, timeout: timeoutMs });
    req.once('connect', (res, socket) => {
      if (res.statusCode === 200) resolve(socket);
      else {
        socket.destroy();
        reject(new Error(`CONNECT ${res.statusCode}`));
      }
    });
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', reject);
    req.end();
  });
}
