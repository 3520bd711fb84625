/**
 * SIGTERM/SIGINT for `start`, from the first moment. The executable shims
 * (`bin/agent`, `bin/integration-proxy`) call {@link catchSignals} before they
 * load any other module, so a signal that arrives while modules and config
 * load no longer kills the process with 143.
 *
 * - Before {@link stopWith} is given a stop function, nothing is held (no
 *   lease, no listener): a signal exits 0 at once.
 * - After it, the first signal calls `stop(false)` (drain within the grace)
 *   and exits 0 when it resolves (1 when it fails); a second signal calls
 *   `stop(true)` (skip the grace). The stop function itself waits for a start
 *   still in progress, so a signal during start stops cleanly.
 *
 * Only Node builtins here: this module must load in a few milliseconds.
 */
type StopFn = (skipGrace: boolean) => Promise<void>;

interface SignalState {
  installed: boolean;
  count: number;
  stop: StopFn | undefined;
  onSignal: ((signal: NodeJS.Signals, count: number) => void) | undefined;
}

// One state per process even if this module were loaded twice (shim and bin through different URLs).
const KEY = Symbol.for('outpost.signals');
const state: SignalState = ((globalThis as Record<symbol, unknown>)[KEY] as SignalState | undefined) ?? {
  installed: false,
  count: 0,
  stop: undefined,
  onSignal: undefined,
};
(globalThis as Record<symbol, unknown>)[KEY] = state;

function handle(signal: NodeJS.Signals): void {
  state.count++;
  const stop = state.stop;
  if (!stop) process.exit(0);
  state.onSignal?.(signal, state.count);
  stop(state.count > 1).then(
    () => process.exit(0),
    () => process.exit(1),
  );
}

/** Installs the SIGTERM/SIGINT handlers (idempotent) and keeps a closed stdout/stderr from crashing the process. */
export function catchSignals(): void {
  if (state.installed) return;
  state.installed = true;
  process.on('SIGTERM', handle);
  process.on('SIGINT', handle);
  tolerateClosedOutput();
}

let tolerating = false;
/**
 * A write to a closed pipe (`agent check | head -1`) emits EPIPE on the stream; unhandled, it would
 * crash the process or, caught by an uncaughtException handler that logs, loop. Such writes are
 * dropped instead (the logger also switches to stderr on its own).
 */
export function tolerateClosedOutput(): void {
  if (tolerating) return;
  tolerating = true;
  for (const s of [process.stdout, process.stderr]) s.on('error', () => undefined);
}

/**
 * From now on a signal drains through `stop` (called with `true` on the
 * second signal). `onSignal` is told first (to log it).
 */
export function stopWith(stop: StopFn, onSignal?: (signal: NodeJS.Signals, count: number) => void): void {
  catchSignals();
  state.onSignal = onSignal;
  state.stop = stop;
}
