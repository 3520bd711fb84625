import { describe, expect, it } from '@jest/globals';
import { PassThrough, Writable } from 'node:stream';
import { createLogger } from '../lib/log/index.js';
import { registerSecret } from '../lib/util/redact.js';

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
});

