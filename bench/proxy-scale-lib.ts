/**
 * Helpers of bench/proxy-scale.ts: stores, the proxy child process, timing.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDb as open, type Db } from '../lib/proxy/store/db.js';
import { migrate } from '../lib/proxy/store/schema.js';

/** A store opened and migrated. */
export async function openDb(url: string): Promise<Db> {
  const db = await open(url);
  await migrate(db);
  return db;
}

export async function createDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = process.env.PG_URL;
  if (!base) throw new Error('PG_URL is not set');
  const name = `outpost_scale_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(base);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** 1 000 000 finished jobs (a few cancelled and failed), 100 queued, and 5 000 agents in pool `big`, in bulk. */
/** The proxy as a child process: `script` run with `serve` (see proxy-scale.ts). */
export function startProxy(script: string, storeUrl: string, overrides: Record<string, unknown> = {}): Promise<{ child: ChildProcess; url: string; token(pool: string, admin: boolean): Promise<string> }> {
  const child = fork(script, ['serve', storeUrl, JSON.stringify(overrides)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let next = 0;
  const waiting = new Map<number, (t: string) => void>();
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.on('message', (m: { url?: string; id?: number; token?: string }) => {
      if (m.url) {
        resolve({
          child,
          url: m.url,
          token: (pool, admin) =>
            new Promise((r) => {
              const id = ++next;
              waiting.set(id, r);
              child.send({ pool, admin, id });
            }),
        });
      } else if (m.id !== undefined) waiting.get(m.id)?.(m.token!);
    });
  });
}

export async function stopProxy(child: ChildProcess): Promise<void> {
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await done;
}

export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : NaN;
}

export async function time(fn: () => Promise<unknown>, runs: number): Promise<{ median: number; max: number; bytes: number }> {
  const ms: number[] = [];
  let bytes = 0;
  await fn(); // warm-up
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    const out = await fn();
    ms.push(performance.now() - t0);
    if (typeof out === 'number') bytes = out;
  }
  ms.sort((a, b) => a - b);
  return { median: ms[Math.floor(ms.length / 2)]!, max: ms[ms.length - 1]!, bytes };
}

export async function get(url: string, token: string | null): Promise<number> {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  const body = await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`${url}: ${res.status} ${Buffer.from(body).toString().slice(0, 200)}`);
  return body.byteLength;
}
