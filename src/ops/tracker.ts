import type { RunHandle, RunOutcome } from '../runner/index.js';

export interface TrackedRun {
  handle: RunHandle;
  kind: 'run' | 'job';
  jobId?: string;
  /** The token id that owns the job (kind 'job'): /v1/processes names the job only to those who can see it. */
  ownerId?: string | null;
}

/** Every process group execd is running right now, by leader pid (= pgid). */
export class RunTracker {
  private readonly runs = new Map<number, TrackedRun>();
  private idleWaiters: (() => void)[] = [];
  /** Called as each run ends (metrics: durations by kind). Must not throw. */
  onDone: ((run: TrackedRun, outcome: RunOutcome) => void) | null = null;

  /** Runs started since this tracker was made (the idle trim's look at whether anything happened). */
  started = 0;

  add(run: TrackedRun): void {
    this.started++;
    this.runs.set(run.handle.pid, run);
    void run.handle.done.then((outcome) => {
      if (this.runs.get(run.handle.pid) === run) this.runs.delete(run.handle.pid);
      this.onDone?.(run, outcome);
      if (this.runs.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    });
  }

  /** The runs going on now. */
  list(): TrackedRun[] {
    return [...this.runs.values()];
  }

  /** Resolves once no run is going on. */
  idle(): Promise<void> {
    if (this.runs.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  byPgid(pgid: number): TrackedRun | undefined {
    return this.runs.get(pgid);
  }

  get size(): number {
    return this.runs.size;
  }

  /** Terminate every running group and wait for each to be reaped. */
  async terminateAll(): Promise<void> {
    const all = [...this.runs.values()];
    for (const r of all) r.handle.terminate('shutdown');
    await Promise.all(all.map((r) => r.handle.done));
  }
}
