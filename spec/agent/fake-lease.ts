import type { LeaseApi } from '../../lib/agent/loop.js';
import type { LeasedJob, LeaseRequest, LeaseResponse, ReleaseRequest, ReleaseResponse } from '../../lib/protocol/schemas.js';

export function job(id: string): LeasedJob {
  return { id, type: 'ping', resource: null, payload: {}, attempt: 1, leaseToken: `tok-${id}-0123456789abcdef`, leaseTtlMs: 30_000, timeoutMs: 300_000 };
}

/** A scripted lease endpoint: each call waits until the test answers it (pure logic of the loop). */
export class FakeLease implements LeaseApi {
  requests: LeaseRequest[] = [];
  released: ReleaseRequest[] = [];
  async release(body: ReleaseRequest): Promise<ReleaseResponse> {
    this.released.push(body);
    return { leases: body.leases.map((l) => ({ jobId: l.jobId, status: 'released' as const })) };
  }
  private pending: Array<{ resolve: (r: LeaseResponse) => void; reject: (e: unknown) => void }> = [];
  lease(body: LeaseRequest, signal?: AbortSignal): Promise<LeaseResponse> {
    this.requests.push(body);
    return new Promise((resolve, reject) => {
      const onAbort = () => reject(signal!.reason);
      const done = () => signal?.removeEventListener('abort', onAbort);
      this.pending.push({ resolve: (r) => (done(), resolve(r)), reject: (e) => (done(), reject(e)) });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
  answer(jobs: LeasedJob[]): void {
    this.pending.shift()!.resolve({ jobs });
  }
  fail(err: unknown): void {
    this.pending.shift()!.reject(err);
  }
  get open(): number {
    return this.pending.length;
  }
}

