import { EventEmitter } from 'node:events';
import type { Config } from '../config.js';
import type { Job, JobList, QueueInfo } from '../schemas/jobs.js';
import type { NotifyStatus } from '../schemas/notify.js';
import type { BackendHooks, JobBackend, QueueDeps } from './backend.js';
import { Conflict, JobNotFound, QueueFull, ShuttingDown, UnknownQueue } from './errors.js';
import { requestDigest } from './idempotency.js';
import { isTerminal } from './job.js';
import type { JobOutputReader } from './job-output.js';
import { LocalRuns } from './local-runs.js';
import type { JobQueue, JobQueueEvents, ListRequest, SubmitRequest, Submitted } from './types.js';
import { Waiters } from './waiters.js';
import { workerLoop } from './worker.js';

/**
 * The queue as the rest of execd sees it, written once over a JobBackend:
 * submit and idempotency, views and long-polls, cancel, signal, stdin, and
 * the shutdown order. The backend only stores and delivers.
 */
export class QueueFront implements JobQueue {
  readonly backend: string;
  readonly events: EventEmitter<JobQueueEvents>;
  private readonly store: JobBackend;
  private readonly waiters = new Waiters();
  private readonly runs = new LocalRuns();
  private draining: Promise<void> | null = null;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly config: Pick<Config, 'killGraceMs' | 'pipeDrainMs'>,
    deps: QueueDeps,
    makeBackend: (hooks: BackendHooks) => JobBackend,
  ) {
    const hooks: BackendHooks = {
      runs: this.runs,
      work: workerLoop(() => this.store, this.runs, deps),
      ended: (id) => this.waiters.notify(id),
    };
    this.store = makeBackend(hooks);
    this.backend = this.store.name;
    this.events = this.store.events;
  }

  async submit({ queue, spec, ownerId, grant, idempotencyKey, runAt }: SubmitRequest): Promise<Submitted> {
    if (this.draining) throw new ShuttingDown('the server is shutting down and takes no new jobs');
    this.knownQueue(queue);
    const idempotency = idempotencyKey === undefined ? null : { key: idempotencyKey, digest: requestDigest(queue, spec) };
    const later = runAt !== undefined && runAt > Date.now() ? runAt : null; // a past notBefore queues it now
    const accepted = await this.store.accept({ queue, spec, ownerId, grant, idempotency, runAt: later });
    switch (accepted.kind) {
      case 'created':
        return { job: accepted.job, created: true };
      case 'duplicate':
        return { job: accepted.job, created: false };
      case 'conflict':
        throw new Conflict(`Idempotency-Key was already used for job ${accepted.jobId} with another body`, { jobId: accepted.jobId });
      case 'full':
        throw new QueueFull(`queue "${queue}" already holds ${accepted.capacity} waiting jobs`, { queue });
    }
  }

  get(id: string): Promise<Job | undefined> {
    return this.store.view(id);
  }

  ownerOf(id: string): Promise<string | null | undefined> {
    return this.store.ownerOf(id);
  }

  async list(request: ListRequest): Promise<JobList> {
    if (request.queue !== undefined) this.knownQueue(request.queue);
    return this.store.list(request);
  }

  async cancel(id: string): Promise<Job> {
    const outcome = await this.store.cancel(id);
    if (outcome.kind === 'unknown') throw new JobNotFound(id);
    if (outcome.kind === 'stopping') {
      const grace = outcome.killGraceMs ?? this.config.killGraceMs;
      const job = await this.waitForTerminal(id, grace + this.config.pipeDrainMs + 10_000);
      if (job) return job;
    }
    return this.mustView(id);
  }

  async signal(id: string, signal: NodeJS.Signals): Promise<Job> {
    const outcome = await this.store.control(id, { op: 'signal', signal });
    if (outcome.kind === 'unknown') throw new JobNotFound(id);
    if (outcome.kind === 'not-running') {
      throw new Conflict(`job ${id} is ${outcome.state}; only a running job can be signaled`, { state: outcome.state });
    }
    if (!outcome.ok) throw new Conflict(`job ${id} has no live process to signal (it just exited, or never started)`, { state: 'running' });
    return this.mustView(id);
  }

  /** Set a running job's terminal size (its process gets SIGWINCH); false when it has no terminal or no live process. */
  async resize(id: string, cols: number, rows: number): Promise<boolean> {
    const outcome = await this.store.control(id, { op: 'resize', cols, rows });
    return outcome.kind === 'delivered' && outcome.ok;
  }

  async remove(id: string): Promise<void> {
    const outcome = await this.store.remove(id);
    if (outcome.kind === 'unknown') throw new JobNotFound(id);
    if (outcome.kind === 'not-terminal') {
      const { state } = outcome;
      throw new Conflict(`job ${id} is ${state}; cancel it first, only a finished job can be deleted`, { state });
    }
  }

  recordNotify(id: string, status: NotifyStatus, first: boolean): Promise<boolean> {
    return this.store.recordNotify(id, status, first);
  }

  async waitForTerminal(id: string, timeoutMs: number, abort?: AbortSignal): Promise<Job | undefined> {
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    abort?.addEventListener('abort', onAbort, { once: true });
    try {
      // Listen first, then look: a job that ends in between still wakes this wait.
      const waiting = timeoutMs > 0 && !abort?.aborted ? this.waiters.wait(id, timeoutMs, stop.signal) : null;
      const job = await this.store.view(id);
      if (!job || isTerminal(job.state) || !waiting) return job;
      await waiting;
      return (await this.store.view(id)) ?? job;
    } finally {
      stop.abort();
      abort?.removeEventListener('abort', onAbort);
    }
  }

  output(id: string): Promise<JobOutputReader | undefined> {
    return this.store.output(id);
  }

  async writeStdin(id: string, data: Buffer | null): Promise<boolean> {
    const outcome = await this.store.control(id, { op: 'stdin', data });
    return outcome.kind === 'delivered' && outcome.ok;
  }

  queues(): Promise<QueueInfo[]> {
    return this.store.queues();
  }

  drain(): Promise<void> {
    return (this.draining ??= Promise.all([this.store.drain(), this.waitersGone()]).then(() => undefined));
  }

  close(): Promise<void> {
    return (this.closing ??= this.shutdown());
  }

  private async shutdown(): Promise<void> {
    const drained = this.drain();
    this.runs.stopAll('shutdown');
    await this.store.close(drained.then(() => this.waiters.notifyAll()));
  }

  /**
   * Resolves once no long-poll or cancel waits for a job here: where the jobs run elsewhere (a Redis API node),
   * what a drain waits for is the requests in flight (the shutdown bounds it by its grace).
   */
  private async waitersGone(): Promise<void> {
    while (this.waiters.size > 0 && !this.closing) await new Promise((r) => setTimeout(r, 50));
  }

  private knownQueue(queue: string): void {
    if (!this.store.queueNames.includes(queue)) throw new UnknownQueue(queue, this.store.queueNames);
  }

  private async mustView(id: string): Promise<Job> {
    const job = await this.store.view(id);
    if (!job) throw new JobNotFound(id);
    return job;
  }
}
