import { describe, expect, it } from '@jest/globals';
import { PassThrough, Writable } from 'node:stream';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../lib/log/index.js';
import { registerSecret } from '../lib/util/redact.js';
import { LogThrottle } from '../lib/log/throttle.js';
import { FakeClock } from './fixtures/fake-clock.js';
import { sleepUntil } from './fixtures/net.js';
import { loadAgentConfig } from '../lib/config/agent.js';
import { loadProxyConfig } from '../lib/config/proxy.js';

function capture(level: string) {
  const stream = new PassThrough();
  const lines: string[] = [];
  stream.on('data', (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean)));
  return { log: createLogger({ level, stream }), lines };
}

describe('log', () => {
  it('writes JSON lines with redacted message, metadata and errors, in children too', async () => {
    registerSecret('hunter2-secret');
    const { log, lines } = capture('info');
    log.child({ jobId: 'j1' }).info('bind with hunter2-secret', { password: 'x', url: 'http://u:pw@h/', err: new Error('no hunter2-secret') });
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!);
    expect(line).toMatchObject({ level: 'info', jobId: 'j1', message: 'bind with [REDACTED]', password: '[REDACTED]', url: 'http://u:[REDACTED]@h/' });
    expect(lines[0]).not.toContain('hunter2-secret');
    expect(lines[0]).not.toContain(':pw@');
  });
  it('drops lines below the level before formatting them', async () => {
    const { log, lines } = capture('info');
    let formatted = 0;
    log.debug('skipped', { nested: { get costly() { formatted++; return 1; } } });
    log.info('kept');
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => JSON.parse(l).message)).toEqual(['kept']);
    expect(formatted).toBe(0);
  });
  it('redacts a 1 MB line in linear time (the old URL pattern was quadratic on it)', async () => {
    registerSecret('hunter2-secret');
    const { log, lines } = capture('info');
    const big = 'abc.def-'.repeat(128 * 1024);
    log.info(`listing ${big}`, { description: big, url: `http://u:pw@h/${big}` });
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!).description).toBe(big);
  }, 30_000);

  it('a closed output drops lines (or falls back), never throws or spins', async () => {
    let writes = 0;
    const closed = new Writable({
      write(_chunk, _enc, cb) {
        writes++;
        cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
      },
    });
    const log = createLogger({ level: 'info', stream: closed });
    for (let i = 0; i < 100; i++) log.info(`line ${i}`);
    await new Promise((r) => setTimeout(r, 20));
    // The first write failed; the stream is given up, not retried for every later line.
    expect(writes).toBe(1);
    log.info('still fine');
  });

  it('writes JSON lines to log.file, rotates at maxSizeBytes and keeps maxFiles, never ANSI (even with format pretty)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-log-'));
    try {
      const file = join(dir, 'agent.log');
      const console = new PassThrough();
      const consoleText: string[] = [];
      console.on('data', (b: Buffer) => consoleText.push(b.toString()));
      const log = createLogger({ level: 'info', format: 'pretty', stream: console, file, maxSizeBytes: 4096, maxFiles: 3 });
      const pad = 'x'.repeat(80);
      // A synchronous burst (winston's own File transport lost all of these, lib/log/file.ts).
      for (let i = 0; i < 400; i++) log.info(`line ${i}`, { i, pad, err: new Error('e') });
      // The last line is in the current file once written.
      const current = () => {
        try {
          return readFileSync(file, 'utf8');
        } catch {
          return '';
        }
      };
      await sleepUntil(() => current().includes('"line 399"'), { timeoutMs: 20_000, stepMs: 50, what: 'the last line written' });
      log.close();
      const files = readdirSync(dir).sort();
      expect(files).toEqual(['agent.log', 'agent1.log', 'agent2.log']);
      const seen: number[] = [];
      const sizes: number[] = [];
      for (const f of files) {
        const text = readFileSync(join(dir, f), 'utf8');
        expect(text).not.toContain('\u001b');
        sizes.push(statSync(join(dir, f)).size);
        for (const l of text.split('\n').filter(Boolean)) {
          const obj = JSON.parse(l);
          expect(obj).toMatchObject({ level: 'info', pad });
          seen.push(obj.i);
        }
      }
      // The newest lines are kept (tailable: agent.log is always the current file), the oldest dropped.
      expect(seen).toContain(399);
      expect(seen).not.toContain(0);
      // Nothing lost between the kept files: the newest lines, contiguous.
      seen.sort((a, b) => a - b);
      expect(seen).toEqual(Array.from({ length: seen.length }, (_, k) => seen[0]! + k));
      for (const size of sizes) expect(size).toBeLessThanOrEqual(4096);
      // Rotation really bounds the total: 400 lines of ~190 bytes are ~75 KiB.
      expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(3 * 4096);
      // The two older files are full up to a line: rotation happened at the limit.
      for (const size of sizes.slice(1)) expect(size).toBeGreaterThan(4096 - 400);
      process.stdout.write(`[measure] log files after 400 lines, limit 4096 B x 3: ${sizes.join(', ')} bytes; kept lines ${seen[0]}..${seen.at(-1)}\n`);
      // The console got pretty lines; a non-TTY console gets no colours either.
      const consoleOut = consoleText.join('');
      expect(consoleOut).toMatch(/ info line 0 /);
      expect(consoleOut).not.toContain('\u001b');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('log file', () => {
  it('keeps a line larger than maxSizeBytes (alone in its file) and goes on writing after it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-log-'));
    try {
      const file = join(dir, 'proxy.log');
      const log = createLogger({ level: 'info', stream: new PassThrough(), file, maxSizeBytes: 1024, maxFiles: 2 });
      log.info('before');
      log.info('big', { blob: 'y'.repeat(4000) });
      log.info('after');
      log.close();
      expect(readFileSync(file, 'utf8')).toContain('"after"');
      expect(readFileSync(join(dir, 'proxy1.log'), 'utf8')).toContain('"big"');
      expect(readdirSync(dir).sort()).toEqual(['proxy.log', 'proxy1.log']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('an unwritable log file does not throw; console lines go on', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'outpost-log-'));
    try {
      const out = new PassThrough();
      const lines: string[] = [];
      out.on('data', (b: Buffer) => lines.push(...b.toString().split('\n').filter(Boolean)));
      // A directory where the file should be: open fails with EISDIR.
      const log = createLogger({ level: 'info', stream: out, file: dir });
      log.info('one');
      log.info('two');
      await new Promise((r) => setImmediate(r));
      expect(lines.map((l) => JSON.parse(l).message)).toEqual(expect.arrayContaining(['one', 'two', 'a log output failed']));
      expect(lines.filter((l) => l.includes('a log output failed'))).toHaveLength(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('LogThrottle', () => {
  it('logs the first event of a key at once, then at most once per period with the count since the last line', async () => {
    const clock = new FakeClock();
    const t = new LogThrottle(clock, 60_000);
    expect(t.hit('a')).toBe(1);
    expect(t.hit('a')).toBeUndefined();
    expect(t.hit('b')).toBe(1);
    await clock.advance(30_000);
    expect(t.hit('a')).toBeUndefined();
    await clock.advance(30_000);
    // The two suppressed events of `a` plus this one.
    expect(t.hit('a')).toBe(3);
    expect(t.hit('a')).toBeUndefined();
  });
  it('remembers a bounded number of keys', () => {
    const t = new LogThrottle(new FakeClock(), 60_000, 2);
    expect([t.hit('a'), t.hit('b'), t.hit('c'), t.hit('a')]).toEqual([1, 1, 1, 1]);
  });
});

describe('log.file config keys', () => {
  it('come from the environment for both processes, with their defaults', () => {
    const agentEnv = { AGENT_PROXY_URL: 'http://127.0.0.1:1', AGENT_TOKEN: 'log-keys-token-0123456789' };
    expect(loadAgentConfig({ env: agentEnv }).log).toEqual({ level: 'info', format: 'json', file: null, maxSizeBytes: 10 * 1024 * 1024, maxFiles: 5 });
    expect(loadAgentConfig({ env: { ...agentEnv, AGENT_LOG_FILE: '/var/log/outpost/agent.log', AGENT_LOG_MAX_SIZE_BYTES: '65536', AGENT_LOG_MAX_FILES: '3' } }).log)
      .toMatchObject({ file: '/var/log/outpost/agent.log', maxSizeBytes: 65536, maxFiles: 3 });
    expect(() => loadAgentConfig({ env: { ...agentEnv, AGENT_LOG_MAX_FILES: '0' } })).toThrow(/log\.maxFiles/);
    expect(loadProxyConfig({ env: {} }).log).toEqual({ level: 'info', format: 'json', file: null, maxSizeBytes: 10 * 1024 * 1024, maxFiles: 5 });
    expect(loadProxyConfig({ env: { PROXY_LOG_FILE: '/tmp/p.log', PROXY_LOG_MAX_SIZE_BYTES: '2048', PROXY_LOG_MAX_FILES: '2' } }).log)
      .toMatchObject({ file: '/tmp/p.log', maxSizeBytes: 2048, maxFiles: 2 });
  });
});
