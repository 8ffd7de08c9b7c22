import type { RunHandle } from './runner/index.js';

export interface TrackedRun {
  handle: RunHandle;
  kind: 'run' | 'job';
  jobId?: string;
}

/** Every process group execd is running right now, by leader pid (= pgid). */
export class RunTracker {
  private readonly runs = new Map<number, TrackedRun>();

  add(run: TrackedRun): void {
    this.runs.set(run.handle.pid, run);
    void run.handle.done.then(() => {
      if (this.runs.get(run.handle.pid) === run) this.runs.delete(run.handle.pid);
    });
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
