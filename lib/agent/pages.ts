/**
 * Output pages as bytes: NDJSON lines encoded straight into buffers that a
 * job's pipe reuses, with room in front for the request's head line.
 *
 * Why reuse: a fresh buffer per page (grown 64 → 128 → 256 KiB, then joined
 * to its head line by a copy) lives outside V8's heap. A page in flight
 * outlives two scavenges, so its Buffer object is promoted and its bytes are
 * freed only by a full GC: a million-row listing held ~20–50 MB of such
 * bytes at its peak. A job's pipe keeps a few buffers and writes every page
 * into one of them.
 */

/** Bytes kept free in front of a page's lines for its head line (`{"leaseToken":…,"seq":…}\n`). */
export const HEAD_ROOM_BYTES = 256;

/** A page: `count` NDJSON lines, each ending in a newline, as UTF-8 bytes. */
export interface Page {
  /** The lines. */
  readonly data: Buffer;
  readonly count: number;
  /**
   * The pool's buffer `data` is a view of: given back once the page is answered. When `data`
   * starts `HEAD_ROOM_BYTES` into it (a whole page, or the first half of a split), the bytes
   * before `data` are free for the head line.
   */
  readonly owner?: Buffer;
}

export const EMPTY_PAGE: Page = { data: Buffer.alloc(0), count: 0 };

/**
 * The buffers of one job's pages: `take` lends a free one (or a new one),
 * `give` takes it back once its page is answered. At most `maxKept` are kept,
 * and none larger than `maxKeptBytes` (a page grown by one huge record is
 * left to the GC).
 */
export class PagePool {
  private readonly free: Buffer[] = [];

  constructor(
    private readonly maxKept: number,
    private readonly maxKeptBytes: number,
  ) {}

  /** A free buffer (of any size: PageBuilder grows it when a line does not fit), else a new one of `minBytes`. */
  take(minBytes: number): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(minBytes);
  }

  give(buf: Buffer | undefined): void {
    if (buf && this.free.length < this.maxKept && buf.length <= this.maxKeptBytes) this.free.push(buf);
  }
}

/** Encodes lines straight into one buffer from the pool, grown when a line does not fit. */
export class PageBuilder {
  bytes = 0;
  count = 0;
  private buf: Buffer;

  constructor(
    private readonly pool: PagePool,
    maxPageBytes: number,
  ) {
    this.buf = pool.take(HEAD_ROOM_BYTES + Math.min(64 * 1024, Math.max(256, maxPageBytes)));
  }

  append(line: string): void {
    const at = HEAD_ROOM_BYTES + this.bytes;
    // UTF-8 takes at most 3 bytes per UTF-16 unit: measure exactly only when that bound might not fit.
    const need = line.length * 3 + 1 <= this.buf.length - at ? 0 : Buffer.byteLength(line) + 1;
    if (need && need > this.buf.length - at) {
      // The outgrown buffer is not given back: the pool should hold buffers of the size pages need.
      const grown = Buffer.allocUnsafe(Math.max(this.buf.length * 2, at + need));
      this.buf.copy(grown, HEAD_ROOM_BYTES, HEAD_ROOM_BYTES, at);
      this.buf = grown;
    }
    this.bytes += this.buf.write(line, at, 'utf8');
    this.buf[HEAD_ROOM_BYTES + this.bytes++] = 0x0a;
    this.count++;
  }

  done(): Page {
    return { data: this.buf.subarray(HEAD_ROOM_BYTES, HEAD_ROOM_BYTES + this.bytes), count: this.count, owner: this.buf };
  }
}

/**
 * `head` followed by the page's lines, as one buffer: written into the room
 * in front of the lines when the page has it (no copy of the page), else
 * joined by a copy (the second half of a split page, an oversized head).
 */
export function withHead(page: Page, head: string): Buffer {
  const headBytes = Buffer.byteLength(head);
  const { owner } = page;
  if (owner?.buffer === page.data.buffer && page.data.byteOffset - owner.byteOffset === HEAD_ROOM_BYTES && headBytes <= HEAD_ROOM_BYTES) {
    const start = HEAD_ROOM_BYTES - headBytes;
    owner.write(head, start, 'utf8');
    return owner.subarray(start, HEAD_ROOM_BYTES + page.data.length);
  }
  return Buffer.concat([Buffer.from(head), page.data]);
}

/** The first ⌈count/2⌉ lines and the rest (views of the same bytes: only the first starts where the head room ends). */
export function splitPage(page: Page): [Page, Page] {
  const half = Math.ceil(page.count / 2);
  let cut = 0;
  for (let i = 0; i < half; i++) cut = page.data.indexOf(0x0a, cut) + 1;
  return [
    { data: page.data.subarray(0, cut), count: half, ...(page.owner ? { owner: page.owner } : {}) },
    { data: page.data.subarray(cut), count: page.count - half },
  ];
}
