import { PassThrough } from 'node:stream';
import { createLogger, silentLogger, type Logger } from '../../../lib/log/index.js';
import { readSecretFile } from '../../../lib/config/secrets.js';
import { systemClock } from '../../../lib/util/clock.js';
import type { ConnectorDeps, OperationContext } from '../../../lib/connectors/types.js';

/** Deps as the agent's composition root builds them. */
export function deps(log: Logger = silentLogger()): ConnectorDeps {
  return { log, clock: systemClock, readSecret: (p) => readSecretFile(p, 'ldap password') };
}

/** A real OperationContext that keeps every page it is given. */
export interface TestCtx extends OperationContext {
  controller: AbortController;
  pages: unknown[][];
  records<T = Record<string, unknown>>(): T[];
}

export function ctx(opts: { keep?: boolean; onPage?: (n: number) => void | Promise<void>; log?: Logger } = {}): TestCtx {
  const controller = new AbortController();
  const pages: unknown[][] = [];
  let n = 0;
  return {
    controller,
    signal: controller.signal,
    log: opts.log ?? silentLogger(),
    pages,
    async writePage(records) {
      n++;
      if (opts.keep !== false) pages.push([...records]);
      else pages.push([records.length]);
      await opts.onPage?.(n);
    },
    records: <T>() => pages.flat() as T[],
  };
}

/** A logger whose every line lands in `lines`, to check that no secret is logged. */
export function capturingLogger(): { log: Logger; text: () => string } {
  const stream = new PassThrough();
  const chunks: string[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c.toString()));
  return { log: createLogger({ level: 'debug', stream }), text: () => chunks.join('') };
}

/** Runs `fn` and returns what it threw (fails the test when it does not throw). */
export async function caught(fn: () => Promise<unknown>): Promise<any> {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
}
