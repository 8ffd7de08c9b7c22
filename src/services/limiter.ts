import { ApiError } from '../errors.js';

/** Bounds synchronous runs in flight: past the bound a request is refused (503) rather than queued. */
export class SyncLimiter {
  private inFlight = 0;

  constructor(readonly max: number) {}

  get running(): number {
    return this.inFlight;
  }

  /** Take a slot or throw QUEUE_FULL; call the returned function exactly once to give it back. */
  acquire(): () => void {
    if (this.inFlight >= this.max) {
      throw new ApiError('QUEUE_FULL', `${this.max} synchronous runs are already in flight; retry shortly or submit a job`, {}, { retryAfter: 1 });
    }
    this.inFlight++;
    let released = false;
    return () => {
      if (!released) {
        released = true;
        this.inFlight--;
      }
    };
  }
}
