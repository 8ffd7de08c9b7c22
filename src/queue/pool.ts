/**
 * A pool of `concurrency` workers draining one source of work.
 *
 * A worker takes its next job on a later turn of the event loop
 * (`setImmediate`), never synchronously inside the previous job's completion:
 * a respawn loop run from a child's exit handler was seen to starve Node's
 * timers for minutes. Each drain starts as many jobs as there are free workers.
 */
export class WorkerPool<T> {
  private active = 0;
  private scheduled = false;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly concurrency: number,
    /** The next job, or undefined when there is none. */
    private readonly take: () => T | undefined,
    /** Run one job to its end; must not reject. */
    private readonly work: (item: T) => Promise<void>,
  ) {}

  /** Jobs being worked on now. */
  get running(): number {
    return this.active;
  }

  /**
   * Work may be waiting: look on a later turn of the event loop. Not while every worker is busy: the
   * next one to finish looks (done), and a submit to a full pool costs no setImmediate (docs/benchmarks.md).
   */
  kick(): void {
    if (this.scheduled || this.stopped || this.active >= this.concurrency) return;
    this.scheduled = true;
    setImmediate(this.drain);
  }

  /** Take no more jobs; resolves once the running ones are done. */
  stop(): Promise<void> {
    this.stopped = true;
    return this.idle();
  }

  idle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private readonly drain = (): void => {
    this.scheduled = false;
    while (!this.stopped && this.active < this.concurrency) {
      const item = this.take();
      if (item === undefined) return;
      this.active++;
      this.work(item).then(this.done, this.done);
    }
  };

  private readonly done = (): void => {
    this.active--;
    if (this.active === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    this.kick();
  };
}
