import type { OperationContext } from '../connectors/types.js';
import type { Logger } from '../log/index.js';
import type { LeasedJob } from '../protocol/schemas.js';
import type { Clock } from '../util/clock.js';
import type { Lease } from './lease.js';
import type { AgentMetrics } from './metrics.js';
import { OutputPipe, type OutputApi, type OutputPipeOptions, type PageForm } from './output-pipe.js';

/** What every job's context shares (built once by the runner). */
export interface JobContextShared {
  api: OutputApi;
  clock: Clock;
  /** The agent's logger; a job's child logger is made from it on first use. */
  log: Logger;
  /** The page form the proxy takes, shared by every job. */
  form: PageForm;
  metrics?: AgentMetrics;
  pipe: OutputPipeOptions;
}

/**
 * One job's OperationContext: its lease's signal, a child logger carrying
 * jobId, type, resource and attempt, and its output pages. The logger and
 * the page pipe are made on first use: most jobs neither log nor list.
 *
 * A class on purpose, with its accessors on the prototype: never an object
 * literal with getters (nor `Object.defineProperty` per job). An accessor
 * defined on each instance puts the object in V8's dictionary mode, and in
 * the agent every job's objects (its lease, the leased job, the closures,
 * the result) then survived the scavenges into the old generation, which only
 * a mark-compact frees, so the heap grew with the jobs run (issue 13, P6).
 * Measured with `node --trace-gc-nvp dist/bench/agent-heap.js --jobs 60000`:
 * 887–961 bytes promoted per no-op job with the literal, 43–44 with this
 * class; peak RSS 128.5–132.3 → 100.9–101.3 MB; 2 mark-compacts → none. In a
 * standalone loop the same: 550–690 B per object with per-instance accessors
 * (getters or defineProperty, even a getter returning a constant), 22–24 B
 * with prototype accessors or closures in plain fields, and 6× the time.
 */
export class JobContext implements OperationContext {
  private logger: Logger | undefined;
  private pipe: OutputPipe | undefined;

  /** A field, not a method, so that a connector may hand it on unbound (`onPage: ctx.writePage`). */
  readonly writePage = (records: readonly unknown[]): Promise<void> => {
    this.pipe ??= new OutputPipe(
      { api: this.shared.api, clock: this.shared.clock, lease: this.lease, log: () => this.log, form: this.shared.form, ...(this.shared.metrics ? { metrics: this.shared.metrics } : {}) },
      this.shared.pipe,
    );
    return this.pipe.write(records);
  };

  constructor(
    private readonly shared: JobContextShared,
    private readonly job: LeasedJob,
    private readonly lease: Lease,
  ) {}

  get signal(): AbortSignal {
    return this.lease.signal;
  }

  get log(): Logger {
    const { job } = this;
    return (this.logger ??= this.shared.log.child({ jobId: job.id, type: job.type, resource: job.resource, attempt: job.attempt }));
  }

  /** Waits until no page is out, whatever became of them; undefined when the job wrote none (nothing to wait for). */
  settle(): Promise<void> | undefined {
    return this.pipe?.settle();
  }

  /** Waits until every page is stored and rejects with the first failure; undefined when the job wrote none. */
  flush(): Promise<void> | undefined {
    return this.pipe?.flush();
  }
}
