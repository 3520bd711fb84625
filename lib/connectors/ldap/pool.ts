import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { Client } from 'ldapts';
import type { Logger } from '../../log/index.js';
import { abortReason, onAbort, throwIfAborted } from '../../util/abort.js';
import type { Clock } from '../../util/clock.js';
import { OutpostError } from '../../util/errors.js';
import type { LdapSettings } from './config.js';
import { ldapResultCode, mapLdapError, type LdapStep } from './errors.js';

/** What the pool needs from the resource settings. */
export type PoolSettings = Pick<
  LdapSettings,
  | 'name'
  | 'url'
  | 'secure'
  | 'startTls'
  | 'host'
  | 'bindDN'
  | 'password'
  | 'timeoutMs'
  | 'connectTimeoutMs'
  | 'ca'
  | 'serverName'
  | 'maxConnections'
  | 'idleTimeoutMs'
>;

/**
 * After the directory rejected a bind, the same DN and password are not sent
 * again for this long: every job would otherwise count one more failed
 * logon, and AD locks the service account after a few. A changed password
 * (a rotated secret file) is tried at once.
 */
const BIND_FAILURE_HOLD_MS = 60_000;

interface Waiter {
  resolve: (c: { client: Client; reused: boolean }) => void;
  reject: (e: unknown) => void;
  signal: AbortSignal;
  detach: () => void;
}

/**
 * A small pool of bound ldapts clients. Each connection binds once and is
 * reused; one whose socket the server closed (restart, idle cut) is dropped
 * and replaced on the next acquire. At most `maxConnections` exist at once;
 * further callers wait in order (and stop waiting when their job aborts).
 */
export class LdapPool {
  private readonly idle: Array<{ client: Client; sinceMs: number }> = [];
  private readonly waiters: Waiter[] = [];
  private open = 0;
  private closed = false;
  /** The last rejected bind (hash of DN and password), so that the same wrong password is not tried again at once. */
  private rejected: { credentials: string; atMs: number; error: OutpostError } | undefined;

  constructor(
    private readonly s: PoolSettings,
    private readonly log: Logger,
    private readonly clock: Clock,
  ) {}

  /**
   * Runs `fn` with a bound client. On abort the connection is destroyed at
   * once (a pending search cannot be cancelled any other way) and the
   * signal's reason is thrown. A client whose request failed at the socket
   * level is not returned to the pool.
   *
   * A pooled connection can die unseen (the server restarted, the FIN is
   * still in flight): when a reused one fails at the socket level, `fn` runs
   * once more on a fresh connection, if `canRetry()` allows (a listing
   * allows it only before its first page went out).
   */
  async use<T>(signal: AbortSignal, step: LdapStep, fn: (client: Client) => Promise<T>, canRetry: () => boolean = () => true): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const { client, reused } = await this.acquire(signal);
      let healthy = true;
      const detach = onAbort(signal, () => {
        healthy = false;
        destroy(client);
      });
      try {
        return await fn(client);
      } catch (err) {
        if (signal.aborted) throw abortReason(signal);
        const mapped = mapLdapError(err, this.s.name, step);
        // Result codes leave the connection usable; socket errors and timeouts do not.
        if (mapped.retryable || !client.isConnected) healthy = false;
        const connectionLost = mapped.code === 'unavailable' && ldapResultCode(err) === undefined && !(err instanceof OutpostError);
        if (reused && attempt === 1 && connectionLost && canRetry()) {
          this.log.debug('ldap pooled connection was gone; retrying on a new one', { resource: this.s.name });
          continue;
        }
        throw mapped;
      } finally {
        detach();
        this.release(client, healthy && client.isBound);
      }
    }
  }

  private async acquire(signal: AbortSignal): Promise<{ client: Client; reused: boolean }> {
    throwIfAborted(signal);
    if (this.closed) throw new OutpostError('unavailable', `ldap ${this.s.name}: connector is closed`, { retryable: true });
    while (this.idle.length) {
      const idle = this.idle.pop();
      if (!idle) break;
      const { client, sinceMs } = idle;
      if (client.isBound && this.clock.now() - sinceMs < this.s.idleTimeoutMs) return { client, reused: true };
      // Closed by the server while idle, or idle so long that a firewall may have dropped it silently.
      this.open--;
      destroy(client);
    }
    if (this.open < this.s.maxConnections) {
      this.open++;
      try {
        return { client: await this.connect(signal), reused: false };
      } catch (err) {
        this.open--;
        this.wakeNext();
        throw err;
      }
    }
    // A connection handed over by release() was in use a moment ago: treat it as reused.
    return new Promise<{ client: Client; reused: boolean }>((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        signal,
        detach: () => {
          // Replaced just below by onAbort's detach.
        },
      };
      w.detach = onAbort(signal, () => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortReason(signal));
      });
      this.waiters.push(w);
    });
  }

  private release(client: Client, reusable: boolean): void {
    if (!reusable || this.closed) {
      this.open--;
      destroy(client);
      this.wakeNext();
      return;
    }
    const w = this.waiters.shift();
    if (w) {
      w.detach();
      w.resolve({ client, reused: true });
    } else {
      this.idle.push({ client, sinceMs: this.clock.now() });
    }
  }

  /** A slot freed up: the first waiter opens a new connection in it. */
  private wakeNext(): void {
    const w = this.waiters.shift();
    if (!w) return;
    w.detach();
    this.acquire(w.signal).then(w.resolve, w.reject);
  }

  private tlsOptions(): ConnectionOptions {
    const name = this.s.serverName ?? this.s.host;
    return {
      ca: this.s.ca,
      host: this.s.host,
      // SNI takes host names only; the certificate check still uses `host`/`servername`.
      servername: isIP(name) ? undefined : name,
      minVersion: 'TLSv1.2',
    };
  }

  /** Connect, optionally StartTLS, bind. A failed step destroys the socket (ldapts leaves it open otherwise). */
  private async connect(signal: AbortSignal): Promise<Client> {
    const client = new Client({
      url: this.s.url,
      timeout: this.s.timeoutMs,
      connectTimeout: this.s.connectTimeoutMs,
      // ldap:// with tlsOptions would make ldapts speak TLS at once; StartTLS gets them later.
      tlsOptions: this.s.secure ? this.tlsOptions() : undefined,
    });
    let step: LdapStep = 'connect';
    const detach = onAbort(signal, () => destroy(client));
    let credentials = '';
    try {
      const password = this.s.password();
      credentials = createHash('sha256').update(`${this.s.bindDN}\0${password}`).digest('hex');
      const held = this.rejected;
      if (held?.credentials === credentials && this.clock.now() - held.atMs < BIND_FAILURE_HOLD_MS) {
        throw new OutpostError(held.error.code, `${held.error.message}; not retried within ${BIND_FAILURE_HOLD_MS / 1000} s so that the account is not locked out`, {
          cause: held.error,
        });
      }
      if (this.s.startTls) {
        step = 'starttls';
        await client.startTLS(this.tlsOptions());
      }
      step = 'bind';
      await client.bind(this.s.bindDN, password);
      this.rejected = undefined;
      throwIfAborted(signal);
      this.log.debug('ldap connection bound', { resource: this.s.name });
      return client;
    } catch (err) {
      destroy(client);
      if (signal.aborted) throw abortReason(signal);
      // A refused or failed TCP connect surfaces from bind/startTLS: name the real step.
      const mapped = mapLdapError(err, this.s.name, step === 'bind' && isConnectFailure(err) ? 'connect' : step);
      if (step === 'bind' && mapped.code === 'invalid_credentials') this.rejected = { credentials, atMs: this.clock.now(), error: mapped };
      throw mapped;
    } finally {
      detach();
    }
  }

  /** Unbinds every idle connection; in-use ones close when released. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) {
      w.detach();
      w.reject(new OutpostError('unavailable', `ldap ${this.s.name}: connector is closed`, { retryable: true }));
    }
    const idle = this.idle.splice(0);
    this.open -= idle.length;
    await Promise.all(idle.map(({ client }) => client.unbind().catch(() => undefined)));
  }

  /** For tests and metrics: connections open now (idle + in use). */
  get size(): number {
    return this.open;
  }
}

function isConnectFailure(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  if (err instanceof Error && err.message === 'Connection timeout') return true;
  return typeof code === 'string' && /^(ECONN|EHOST|ENET|ENOTFOUND|EAI_|ETIMEDOUT|ERR_TLS|ERR_SSL|CERT_|UNABLE_TO|SELF_SIGNED|DEPTH_ZERO)/.test(code);
}

/** Ends a client without waiting: unbind sends the request and destroys the socket. */
function destroy(client: Client): void {
  client.unbind().catch(() => undefined);
}
