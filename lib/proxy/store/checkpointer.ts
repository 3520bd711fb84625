import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../log/index.js';
import type { LifecycleState } from '../../util/lifecycle.js';
import type { SqliteConn } from './sqlite.js';

/** Options of the background checkpointer. */
export interface CheckpointerOptions {
  /** How often the worker copies the WAL into the database file. Default 250 ms. */
  intervalMs?: number;
  /**
   * WAL pages after which the proxy's own connection checkpoints anyway (the
   * backstop that bounds the WAL, ~40 MB at 4 KiB pages). Default 10 000.
   */
  backstopPages?: number;
}

/** SQLite's own default for `wal_autocheckpoint`, restored when the worker stops. */
export const SQLITE_AUTOCHECKPOINT_PAGES = 1000;
const DEFAULT_INTERVAL_MS = 250;
const DEFAULT_BACKSTOP_PAGES = 10_000;
/** A worker that does not exit this long after being asked is terminated. */
const STOP_WAIT_MS = 2000;

/*
 * The worker, a CommonJS script (eval): its own connection to the same file,
 * PASSIVE checkpoints on a timer (they never wait for the proxy's connection,
 * which goes on writing), closed on 'stop'.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.addon);
const db = new Database(workerData.file, { fileMustExist: true });
const timer = setInterval(() => {
  try { db.pragma('wal_checkpoint(PASSIVE)'); } catch (err) { parentPort.postMessage({ failed: String(err && err.message) }); }
}, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

/**
 * Checkpoints the SQLite store in a worker thread. SQLite's automatic
 * checkpoint runs inside the commit that crosses 1 000 WAL pages, on the
 * proxy's only thread: it copies the pages and syncs the file twice while
 * every request waits. With this worker doing that work beside it, the
 * proxy's connection checkpoints only past `backstopPages` (what is left by
 * then is small), so the WAL stays bounded. Measured in bench-peers phase A
 * and B, six alternated runs each: +8 % jobs/s, dispatch p99 9.4 → 6.6 ms.
 * When the worker fails or exits, the connection goes back to SQLite's default.
 */
export class Checkpointer {
  private worker: Worker | undefined;
  private _state: LifecycleState = 'idle';

  constructor(
    private readonly opts: CheckpointerOptions,
    private readonly deps: { conn: SqliteConn; log: Logger },
  ) {}

  get state(): LifecycleState {
    return this._state;
  }

  start(): void {
    if (this._state !== 'idle') return;
    this._state = 'running';
    const { conn, log } = this.deps;
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { file: conn.file, intervalMs: this.opts.intervalMs ?? DEFAULT_INTERVAL_MS, addon: createRequire(import.meta.url).resolve('better-sqlite3') },
    });
    this.worker = worker;
    conn.autoCheckpoint(this.opts.backstopPages ?? DEFAULT_BACKSTOP_PAGES);
    let warned = false;
    worker.on('message', (m: { failed?: string }) => {
      if (!m.failed || warned) return;
      warned = true;
      log.warn('background checkpoint failed; it is tried again', { error: m.failed });
    });
    worker.on('error', (err) => log.warn('the checkpoint worker failed; the store checkpoints on its own connection', { error: err.message }));
    worker.once('exit', () => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      if (conn.open) conn.autoCheckpoint(SQLITE_AUTOCHECKPOINT_PAGES);
    });
    // It never keeps the process alive: stop() ends it, and exit ends it anyway.
    worker.unref();
  }

  /** Ends the worker (its connection closed first, so the proxy's close is the last one and removes the WAL). Idempotent. */
  async stop(): Promise<void> {
    if (this._state === 'stopped') return;
    this._state = 'stopped';
    const worker = this.worker;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage('stop');
    const timer = setTimeout(() => void worker.terminate(), STOP_WAIT_MS);
    await exited;
    clearTimeout(timer);
  }
}
