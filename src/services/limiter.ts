import { DomainError } from '../errors.js';

/** As many synchronous runs as the server allows are in flight: try again shortly, or submit a job. */
export class TooManySyncRuns extends DomainError {
  override name = 'TooManySyncRuns';
  readonly code = 'TOO_MANY_SYNC_RUNS';
  constructor(max: number) {
    super(`${max} synchronous runs are already in flight; retry shortly or submit a job`, {}, { retryAfter: 1 });
  }
}

/** Bounds synchronous runs in flight: past the bound a request is refused (503) rather than queued. */
export class SyncLimiter {
  private inFlight = 0;

  constructor(readonly max: number) {}

  get running(): number {
    return this.inFlight;
  }

  /** Take a slot or throw TooManySyncRuns; call the returned function exactly once to give it back. */
  acquire(): () => void {
    if (this.inFlight >= this.max) throw new TooManySyncRuns(this.max);
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
