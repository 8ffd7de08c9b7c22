/**
 * Callers waiting for a job to become terminal (long-polls, cancel), kept per
 * job so that a thousand long-polls cost a thousand closures, not a thousand
 * event listeners.
 */
export class Waiters {
  private readonly byId = new Map<string, Set<() => void>>();

  /** Resolves on `notify(id)`, after `timeoutMs`, or when `abort` fires, whichever comes first. */
  wait(id: string, timeoutMs: number, abort?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.byId.get(id);
      if (!set) this.byId.set(id, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        abort?.removeEventListener('abort', done);
        set.delete(done);
        if (set.size === 0 && this.byId.get(id) === set) this.byId.delete(id);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      if (abort?.aborted) done();
      else abort?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }

  /** Jobs someone waits for now. */
  get size(): number {
    return this.byId.size;
  }

  notify(id: string): void {
    const set = this.byId.get(id);
    if (set) for (const done of [...set]) done();
  }

  notifyAll(): void {
    for (const id of [...this.byId.keys()]) this.notify(id);
  }
}
