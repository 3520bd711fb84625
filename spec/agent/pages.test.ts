import { describe, expect, it } from '@jest/globals';
import { HEAD_ROOM_BYTES, PageBuilder, PagePool, splitPage, withHead } from '../../lib/agent/pages.js';

/** Output page bytes (lib/agent/pages.ts): lines, the head line in front, splits, and the buffer pool's bounds. */
function page(pool: PagePool, lines: string[], maxPageBytes = 1024 * 1024) {
  const b = new PageBuilder(pool, maxPageBytes);
  for (const l of lines) b.append(l);
  return b.done();
}

describe('output page bytes', () => {
  it('encodes lines as UTF-8 with a newline each, growing past the first buffer without losing a byte', () => {
    const lines = Array.from({ length: 500 }, (_, i) => JSON.stringify({ i, name: `ü${'é'.repeat(i)}✓` }));
    const p = page(new PagePool(2, 1 << 22), lines, 512);
    expect(p.count).toBe(500);
    expect(p.data.toString('utf8')).toBe(lines.map((l) => `${l}\n`).join(''));
  });

  it('writes the head line into the room in front of the lines: no copy of the page', () => {
    const p = page(new PagePool(2, 1 << 22), ['{"a":1}', '{"b":2}']);
    const body = withHead(p, '{"leaseToken":"t","seq":16}\n');
    expect(body.toString()).toBe('{"leaseToken":"t","seq":16}\n{"a":1}\n{"b":2}\n');
    expect(body.buffer).toBe(p.owner!.buffer);
    // A head longer than the room is joined by a copy, still whole.
    const long = `${JSON.stringify({ leaseToken: 'x'.repeat(HEAD_ROOM_BYTES), seq: 0 })}\n`;
    const copied = withHead(p, long);
    expect(copied.toString()).toBe(`${long}{"a":1}\n{"b":2}\n`);
    expect(copied.buffer).not.toBe(p.owner!.buffer);
  });

  it('splits a page in halves; the second half gets its head by a copy, so the first half’s bytes are never overwritten', () => {
    const p = page(new PagePool(2, 1 << 22), ['1', '2', '3', '4', '5']);
    const [head, tail] = splitPage(p);
    expect([head.count, tail.count]).toEqual([3, 2]);
    const first = withHead(head, 'H1\n');
    const second = withHead(tail, 'H2\n');
    expect(first.toString()).toBe('H1\n1\n2\n3\n');
    expect(second.toString()).toBe('H2\n4\n5\n');
  });

  it('the pool keeps at most its count of buffers and none over its size', () => {
    const pool = new PagePool(2, 1000);
    const a = pool.take(100);
    const b = pool.take(100);
    const c = pool.take(100);
    pool.give(a);
    pool.give(b);
    pool.give(c);
    pool.give(Buffer.alloc(5000));
    expect([pool.take(1), pool.take(1)]).toEqual(expect.arrayContaining([a, b]));
    expect(pool.take(1)).not.toBe(c);
  });
});
