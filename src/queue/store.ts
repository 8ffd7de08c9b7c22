import { Fifo } from './fifo.js';
import { isTerminal, type JobRecord, type JobState } from './job.js';
import { hasLabels } from './retry.js';

/** What the store keeps beside a record. */
export interface StoredJob extends JobRecord {
  /** Slot in the finish-order list, while retained as finished. */
  retainTicket: number | null;
  removed: boolean;
  idempotency: { key: string; digest: string } | null;
}

export interface RetentionOptions {
  /** Most finished jobs kept; the oldest-finished go first. */
  retainJobs: number;
  /** How long a finished job is kept after it finished. */
  retainMs: number;
  /** Called for each record removed (by retention or by `remove`), to free its output. */
  onRemove: (job: StoredJob) => void;
}

export interface ListFilter {
  state?: JobState | undefined;
  queue?: string | undefined;
  /** Only the jobs of this token id (undefined: every job). */
  owner?: string | undefined;
  labels?: readonly (readonly [string, string])[] | undefined;
}

/** Idempotency keys are per owner: one token can neither fetch nor block another's job by reusing its key. */
const keyOf = (ownerId: string | null, key: string): string => `${ownerId ?? ''}\u0000${key}`;

/**
 * The job records of one server: by id, in acceptance order (for cursor
 * pagination) and, once finished, in finish order (for retention by count
 * and by age). Idempotency keys (per owner) live and die with their job.
 */
export class JobStore<J extends StoredJob> {
  private readonly byId = new Map<string, J>();
  private readonly keys = new Map<string, J>();
  /** Increasing seq; removed records stay until compaction. */
  private ordered: J[] = [];
  private removedInOrder = 0;
  private readonly finished = new Fifo<J>(Number.POSITIVE_INFINITY, (job, ticket) => {
    job.retainTicket = ticket;
  });
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: RetentionOptions) {}

  get size(): number {
    return this.byId.size;
  }

  get finishedCount(): number {
    return this.finished.size;
  }

  add(job: J): void {
    const last = this.ordered[this.ordered.length - 1];
    if (last && last.seq >= job.seq) throw new Error('jobs must be added in increasing seq');
    this.byId.set(job.id, job);
    this.ordered.push(job);
    if (job.idempotency) this.keys.set(keyOf(job.ownerId, job.idempotency.key), job);
  }

  get(id: string): J | undefined {
    return this.byId.get(id);
  }

  /** The job `ownerId` submitted with this Idempotency-Key. */
  byIdempotencyKey(ownerId: string | null, key: string): J | undefined {
    return this.keys.get(keyOf(ownerId, key));
  }

  /** A job reached a terminal state: keep it under the retention rules. */
  finish(job: J): void {
    if (!isTerminal(job.state) || job.retainTicket !== null || job.removed) return;
    job.retainTicket = this.finished.push(job);
    while (this.finished.size > this.options.retainJobs) this.remove(this.finished.peek()!);
    this.scheduleSweep();
  }

  remove(job: J): void {
    if (job.removed) return;
    job.removed = true;
    this.byId.delete(job.id);
    if (job.idempotency) {
      const key = keyOf(job.ownerId, job.idempotency.key);
      if (this.keys.get(key) === job) this.keys.delete(key);
    }
    if (job.retainTicket !== null) this.finished.remove(job.retainTicket);
    job.retainTicket = null;
    this.removedInOrder++;
    if (this.removedInOrder > 1024 && this.removedInOrder * 2 > this.ordered.length) {
      this.ordered = this.ordered.filter((j) => !j.removed);
      this.removedInOrder = 0;
    }
    this.options.onRemove(job);
  }

  /**
   * Up to `limit` jobs matching `filter`, and whether more match: oldest first with seq > `from`, or (desc)
   * newest first with seq < `from` (Infinity: from the newest).
   */
  list(filter: ListFilter, from: number, limit: number, order: 'asc' | 'desc' = 'asc'): { items: J[]; more: boolean } {
    const items: J[] = [];
    const desc = order === 'desc';
    // seqs are whole numbers: the last one below `from` sits just before the first one above from - 1
    const step = desc ? -1 : 1;
    for (let i = desc ? this.firstAfter(from - 1) - 1 : this.firstAfter(from); i >= 0 && i < this.ordered.length; i += step) {
      const job = this.ordered[i]!;
      if (job.removed || (filter.state && job.state !== filter.state) || (filter.queue && job.queue !== filter.queue)) continue;
      if (filter.owner !== undefined && job.ownerId !== filter.owner) continue;
      if (!hasLabels(job.spec, filter.labels)) continue;
      if (items.length === limit) return { items, more: true };
      items.push(job);
    }
    return { items, more: false };
  }

  /** Every record, oldest first. */
  all(): J[] {
    return this.ordered.filter((j) => !j.removed);
  }

  /** Remove the finished jobs older than retainMs now; returns how many went. */
  sweep(now = Date.now()): number {
    let n = 0;
    for (let job = this.finished.peek(); job && job.finishedAt! + this.options.retainMs <= now; job = this.finished.peek()) {
      this.remove(job);
      n++;
    }
    return n;
  }

  /** Stop the age timer and remove every record. */
  clear(): void {
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    for (const job of this.all()) this.remove(job);
  }

  private firstAfter(seq: number): number {
    let lo = 0;
    let hi = this.ordered.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ordered[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private scheduleSweep(): void {
    if (this.sweepTimer !== undefined) return;
    const oldest = this.finished.peek();
    if (!oldest) return;
    const wait = Math.max(0, oldest.finishedAt! + this.options.retainMs - Date.now());
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      this.sweep();
      this.scheduleSweep();
    }, Math.min(wait + 1, 2 ** 31 - 1));
    this.sweepTimer.unref();
  }
}
