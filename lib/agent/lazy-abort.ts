/**
 * An AbortController whose AbortSignal is made only when someone asks for it.
 * Every job needs a way to be aborted, but a Node AbortSignal (an EventTarget)
 * costs a few µs to build, and many jobs (a no-op `ping`, a job that ends
 * before anything listens) never look at theirs. Aborting before the signal
 * exists records the reason; the signal, when made, starts aborted with it.
 */
export class LazyAbortController {
  private controller: AbortController | undefined;
  private abortReason: unknown;
  private isAborted = false;

  /** The signal (made now if it was not yet). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.isAborted) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  /** Same as `signal.aborted`, without making the signal. */
  get aborted(): boolean {
    return this.isAborted;
  }

  /** Same as `signal.reason`, without making the signal. */
  get reason(): unknown {
    return this.abortReason;
  }

  /** Aborts once; later calls are ignored, as with AbortController. */
  abort(reason?: unknown): void {
    if (this.isAborted) return;
    this.isAborted = true;
    this.abortReason = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
    this.controller?.abort(this.abortReason);
  }
}
