import { closeSync, fstatSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { performance } from 'node:perf_hooks';
import Transport from 'winston-transport';

/** winston's formatted line on an info object (triple-beam's MESSAGE). */
const MESSAGE = Symbol.for('message');
/** After a failed open or write, the file is tried again on the first line after this. */
const RETRY_AFTER_MS = 10_000;

/** Options of {@link RotatingFile}. */
export interface RotatingFileOptions {
  /** The current log file; older ones are `name1.ext`, `name2.ext` … (winston's tailable naming). */
  file: string;
  /** A line that would take the file past this starts a new file. */
  maxSizeBytes: number;
  /** Files kept, the current one included; the oldest is dropped. */
  maxFiles: number;
}

/**
 * Size-rotated log file. Why not winston's own File transport (which the
 * logger would rather use): in winston 3.19 it loses lines whenever they
 * arrive while it rotates (measured: 247 of 400 lines lost at one line per
 * event-loop turn, all of them for a synchronous burst; upstream
 * winstonjs/winston#1655, open), its `lazy` mode stops writing for good after
 * the first rotation when lines are spread out, and one line larger than
 * `maxsize` stops the file forever (#2354). This one appends with one
 * synchronous write per line (lines are whole and in order, and on disk
 * before a crash: audit lines must not be lost), rotates by renaming between
 * two lines, and never throws: a failed open or write drops lines and tries
 * again after 10 s, saying so once through the transport's 'error' event.
 */
export class RotatingFile extends Transport {
  private fd: number | undefined;
  private sizeBytes = 0;
  private failedAtMs = -Infinity;

  constructor(private readonly opts: RotatingFileOptions & { format?: Transport.TransportStreamOptions['format'] }) {
    super({ format: opts.format });
  }

  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    this.write1(Buffer.from(`${String(info[MESSAGE])}\n`, 'utf8'));
    next();
  }

  private write1(line: Buffer): void {
    try {
      let fd = this.fd;
      if (fd === undefined) {
        if (performance.now() - this.failedAtMs < RETRY_AFTER_MS) return;
        fd = this.open();
      }
      // A line larger than the limit still goes out, alone in its file.
      if (this.sizeBytes > 0 && this.sizeBytes + line.length > this.opts.maxSizeBytes) fd = this.rotate();
      let off = 0;
      while (off < line.length) off += writeSync(fd, line, off);
      this.sizeBytes += line.length;
    } catch (err) {
      this.closeFd();
      this.failedAtMs = performance.now();
      this.emit('error', err);
    }
  }

  private open(): number {
    mkdirSync(dirname(this.opts.file), { recursive: true });
    const fd = (this.fd = openSync(this.opts.file, 'a', 0o640));
    this.sizeBytes = fstatSync(fd).size;
    return fd;
  }

  /** name → name1 → name2 …; the file past `maxFiles` is overwritten by the rename before it. */
  private rotate(): number {
    this.closeFd();
    for (let i = this.opts.maxFiles - 1; i >= 1; i--) {
      try {
        renameSync(rotatedName(this.opts.file, i - 1), rotatedName(this.opts.file, i));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    // maxFiles 1: nothing kept, the file starts again empty.
    const fd = (this.fd = openSync(this.opts.file, this.opts.maxFiles > 1 ? 'a' : 'w', 0o640));
    this.sizeBytes = fstatSync(fd).size;
    return fd;
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // Already closed or the disk is gone: nothing more to do with it.
    }
    this.fd = undefined;
  }

  override close(): void {
    this.closeFd();
  }
}

/** `agent.log`, 2 → `agent2.log` (0 is the file itself). */
export function rotatedName(file: string, n: number): string {
  if (n === 0) return file;
  const ext = extname(file);
  return `${file.slice(0, file.length - ext.length)}${n}${ext}`;
}
