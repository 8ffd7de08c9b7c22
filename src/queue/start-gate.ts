import type { RunHandle } from '../runner/index.js';

/**
 * A job between "running" and its process. Its state says running from the
 * moment a worker takes it; the process exists a moment later (the spec
 * prepared, the child spawned). What needs the process in between (a signal)
 * waits here and is applied once it exists, instead of being refused.
 */
export class StartGate {
  private waiters: Array<(handle: RunHandle | null) => void> = [];
  private opened = false;
  private handle: RunHandle | null = null;

  /** The job's process once it exists; null when it never started (the start failed, or the job ended first). */
  process(): Promise<RunHandle | null> {
    if (this.opened) return Promise.resolve(this.handle);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The process exists, or (null) never will: every waiter gets it. Only the first call counts. */
  open(handle: RunHandle | null): void {
    if (this.opened) return;
    this.opened = true;
    this.handle = handle;
    for (const wake of this.waiters.splice(0)) wake(handle);
  }
}
