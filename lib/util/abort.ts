import { OutpostError } from './errors.js';

/** A signal that aborts when any of `signals` does (Node ≥ 20.3 has AbortSignal.any). */
export function anySignal(signals: Array<AbortSignal | undefined>): AbortSignal {
  return AbortSignal.any(signals.filter((s): s is AbortSignal => s !== undefined));
}

/** Throws the signal's reason if it has been aborted: checked between pages of a listing. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

/** The reason of an aborted signal as an Error (an OutpostError when we set it). */
export function abortReason(signal: AbortSignal): Error {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  return new OutpostError('aborted', typeof r === 'string' ? r : 'the operation was aborted', { retryable: true });
}

/** Runs `fn` whenever `signal` aborts (at once if it already has); returns a function that detaches it. */
export function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (!signal) return () => undefined;
  if (signal.aborted) {
    fn();
    return () => undefined;
  }
  signal.addEventListener('abort', fn, { once: true });
  return () => signal.removeEventListener('abort', fn);
}
