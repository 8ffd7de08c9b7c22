import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../../config.js';
import { flatLogger } from '../../log.js';
import type { Job, JobList, QueueInfo } from '../../schemas/jobs.js';
import type { NotifyStatus } from '../../schemas/notify.js';
import type {
  Acceptance, Accepted, BackendHooks, CancelOutcome, Claim, ControlOutcome, JobBackend, QueueDeps, RemoveOutcome,
} from '../backend.js';
import { Fifo } from '../fifo.js';
import { isTerminal, transition, type JobError, type JobResult, type TerminalState } from '../job.js';
import { maxAttempts, retryDelay } from '../retry.js';
import { JobOutput, type JobOutputReader } from '../job-output.js';
import { EMPTY_FINISHED_OUTPUT, isEmptyFinished } from '../finished-output.js';
import type { ControlMessage, LocalRun } from '../local-runs.js';
import { SHUTDOWN_ERROR } from '../outcome.js';
import { writeFailureReason } from '../output-log.js';
import { WorkerPool } from '../pool.js';
import { JobStore } from '../store.js';
import type { JobQueueEvents, ListRequest } from '../types.js';
import { redactSpec, toJobView } from '../view.js';
import { newMemoryJob, type MemoryJob } from './job.js';

const maxAttemptsOf = (job: MemoryJob): number => maxAttempts(job.fullSpec ?? job.spec);

interface Lane {
  name: string;
  fifo: Fifo<MemoryJob>;
  pool: WorkerPool<MemoryJob>;
  processed: number;
  failed: number;
  /** Jobs of this queue waiting for their start time or a retry's backoff: they count against its capacity. */
  scheduled: number;
}

type MemoryConfig = Pick<
  Config,
  'queues' | 'queueCapacity' | 'retainJobs' | 'retainMs' | 'outputMemoryBytes' | 'maxOutputBytes' | 'nodeId'
>;

const HOST = hostname();

/** The default backend: queues, workers, records and output in this process. */
export class MemoryBackend implements JobBackend {
  readonly name = 'memory';
  readonly events = new EventEmitter<JobQueueEvents>();
  readonly queueNames: readonly string[];
  private readonly lanes = new Map<string, Lane>();
  private readonly store: JobStore<MemoryJob>;
  private readonly outputDir: string;
  private seq = 0;
  /** Set by drain: an attempt that ends from now on is not retried (nothing would run it). */
  private draining = false;
  /** `job finished`, one line per job with flat fields: the cheap logger (log.ts). */
  private readonly finishLog: FastifyBaseLogger;

  constructor(
    private readonly config: MemoryConfig,
    private readonly deps: QueueDeps,
    private readonly hooks: BackendHooks,
  ) {
    this.outputDir = join(deps.filesDir, 'jobs');
    mkdirSync(this.outputDir, { recursive: true, mode: 0o700 }); // at start, inside the instance's private directory
    this.finishLog = flatLogger(deps.log);
    this.store = new JobStore<MemoryJob>({
      retainJobs: config.retainJobs,
      retainMs: config.retainMs,
      onRemove: (job) => {
        (job as MemoryJob).output?.dispose();
        hooks.ended(job.id);
      },
    });
    for (const q of config.queues) {
      // Capacity is checked on acceptance over queued + scheduled (accept): a job whose start time or backoff ends always finds room.
      const fifo = new Fifo<MemoryJob>(Number.POSITIVE_INFINITY, (job, t) => (job.ticket = t));
      const lane: Lane = { name: q.name, fifo, pool: null!, processed: 0, failed: 0, scheduled: 0 };
      lane.pool = new WorkerPool(q.concurrency, () => this.take(lane), (job) => hooks.work(job.id));
      this.lanes.set(q.name, lane);
    }
    this.queueNames = [...this.lanes.keys()];
  }

  async accept({ queue, spec, ownerId, grant, idempotency, runAt }: Acceptance): Promise<Accepted> {
    const lane = this.lanes.get(queue)!;
    if (idempotency) {
      const prior = this.store.byIdempotencyKey(ownerId, idempotency.key);
      if (prior && prior.idempotency!.digest === idempotency.digest) return { kind: 'duplicate', job: this.toView(prior) };
      if (prior) return { kind: 'conflict', jobId: prior.id };
    }
    if (lane.fifo.size + lane.scheduled >= this.config.queueCapacity) return { kind: 'full', capacity: this.config.queueCapacity };
    const job = newMemoryJob(++this.seq, queue, spec, idempotency, ownerId, grant, { node: this.config.nodeId, runAt });
    this.store.add(job);
    if (job.state === 'scheduled') this.schedule(job);
    else {
      job.ticket = lane.fifo.push(job);
      lane.pool.kick();
    }
    // One view for the answer and for the queued event (its listeners, the /v1/events viewers, only read it).
    const view = this.toView(job);
    if (this.events.listenerCount('queued') > 0) this.events.emit('queued', view, job.ownerId);
    return { kind: 'created', job: view };
  }

  async view(id: string): Promise<Job | undefined> {
    const job = this.store.get(id);
    return job && this.toView(job);
  }

  async ownerOf(id: string): Promise<string | null | undefined> {
    return this.store.get(id)?.ownerId;
  }

  async list({ state, queue, owner, limit, order = 'asc', cursor, labels }: ListRequest): Promise<JobList> {
    const from = cursor === undefined ? (order === 'desc' ? Infinity : 0) : Number(cursor);
    const { items, more } = this.store.list({ state, queue, owner, labels }, from, limit, order);
    return { items: items.map((j) => this.toView(j)), nextCursor: more ? String(items[items.length - 1]!.seq) : null };
  }

  async output(id: string): Promise<JobOutputReader | undefined> {
    const job = this.store.get(id);
    return job && this.outputOf(job);
  }

  async queues(): Promise<QueueInfo[]> {
    return [...this.lanes.values()].map((l) => ({
      name: l.name,
      concurrency: l.pool.concurrency,
      running: l.pool.running,
      queued: l.fifo.size,
      scheduled: l.scheduled,
      capacity: this.config.queueCapacity,
      processed: l.processed,
      failed: l.failed,
    }));
  }

  async cancel(id: string): Promise<CancelOutcome> {
    const job = this.store.get(id);
    if (!job) return { kind: 'unknown' };
    if (job.state === 'queued') {
      this.lanes.get(job.queue)!.fifo.remove(job.ticket!);
      job.ticket = null;
      this.end(job, 'canceled');
    } else if (job.state === 'scheduled') {
      this.unschedule(job);
      this.end(job, 'canceled');
    } else if (job.state === 'running') {
      await this.hooks.runs.apply(id, { op: 'cancel' });
      return { kind: 'stopping', killGraceMs: job.spec.killGraceMs };
    }
    return { kind: 'settled' };
  }

  async control(id: string, msg: Exclude<ControlMessage, { op: 'cancel' }>): Promise<ControlOutcome> {
    const job = this.store.get(id);
    if (!job) return { kind: 'unknown' };
    if (job.state !== 'running') return { kind: 'not-running', state: job.state };
    return { kind: 'delivered', ok: await this.hooks.runs.apply(id, msg) };
  }

  async remove(id: string): Promise<RemoveOutcome> {
    const job = this.store.get(id);
    if (!job) return { kind: 'unknown' };
    if (!isTerminal(job.state)) return { kind: 'not-terminal', state: job.state };
    this.store.remove(job);
    return { kind: 'removed' };
  }

  async recordNotify(id: string, status: NotifyStatus, first: boolean): Promise<boolean> {
    const job = this.store.get(id);
    if (!job || (first && job.notify)) return false;
    job.notify = status;
    return true;
  }

  async claim(id: string, _run: LocalRun): Promise<Claim | null> {
    const job = this.store.get(id);
    if (!job || job.state !== 'queued') return null;
    const now = Date.now();
    transition(job, 'running', {}, now);
    // The first start redacts the record's spec; the full one stays while attempts remain (a retry needs its env and stdin).
    const spec = job.fullSpec ?? job.spec;
    job.spec = redactSpec(spec);
    job.fullSpec = spec !== job.spec && maxAttemptsOf(job) > job.attempt + 1 ? spec : null;
    const output = this.liveOutput(job);
    job.attempt++;
    job.pid = null;
    job.attempts.push({
      attempt: job.attempt, node: this.config.nodeId, host: HOST, startedAt: now, finishedAt: null, state: 'running',
      result: null, error: null, output: { stdout: output.end('stdout'), stderr: output.end('stderr') },
    });
    return { id, queue: job.queue, spec, grant: job.grant, ownerId: job.ownerId, output };
  }

  async markStarted(claim: Claim, pid: number): Promise<void> {
    const job = this.store.get(claim.id);
    if (!job) return;
    job.pid = pid;
    this.emit('started', job);
  }

  async finish(claim: Claim, state: TerminalState, result: JobResult | null, error: JobError | null): Promise<void> {
    const job = this.store.get(claim.id);
    if (!job || job.state !== 'running') return;
    const lane = this.lanes.get(job.queue)!;
    lane.processed++;
    if (state === 'failed' || state === 'timed_out') lane.failed++;
    const now = Date.now();
    const attempt = job.attempts[job.attempts.length - 1];
    if (attempt) Object.assign(attempt, { finishedAt: now, state, result, error });
    const delay = this.draining ? null : retryDelay(job.spec, job.attempt, state, error);
    if (delay === null) {
      this.end(job, state, result, error);
      return;
    }
    // Retried: scheduled for its backoff (no worker waits on it), then queued at the back of its queue.
    transition(job, 'scheduled', {}, now);
    job.runAt = now + delay;
    job.pid = null; // its process is gone (attempts[] keeps how it ended)
    this.schedule(job);
    const { id: jobId, queue } = job;
    this.finishLog.info({ jobId, queue, state, attempt: job.attempt, retryInMs: delay, error: error?.code }, 'job attempt ended; retried');
    this.emit('queued', job);
  }

  /** A scheduled job waits for its time here, off the FIFO: it counts against capacity, no worker waits for it. */
  private schedule(job: MemoryJob): void {
    const lane = this.lanes.get(job.queue)!;
    lane.scheduled++;
    job.timer = setTimeout(() => this.promote(job), Math.max(0, (job.runAt ?? 0) - Date.now()));
    job.timer.unref();
  }

  private unschedule(job: MemoryJob): void {
    if (job.timer === null) return;
    clearTimeout(job.timer);
    job.timer = null;
    this.lanes.get(job.queue)!.scheduled--;
  }

  /** Its time came: queued at the back of its queue (FIFO among the jobs queued from now on). */
  private promote(job: MemoryJob): void {
    this.unschedule(job);
    if (job.state !== 'scheduled' || job.removed) return;
    if (job.runAt !== null && Date.now() < job.runAt) {
      this.schedule(job); // a timer may fire a millisecond early: never before its time
      return;
    }
    transition(job, 'queued');
    job.runAt = null;
    const lane = this.lanes.get(job.queue)!;
    job.ticket = lane.fifo.push(job);
    lane.pool.kick();
    this.emit('queued', job);
  }

  /** No job starts from now on; the queued ones are canceled; resolves when the running ones are done. */
  async drain(): Promise<void> {
    this.draining = true;
    for (const job of this.store.all()) {
      if (job.state !== 'scheduled') continue;
      this.unschedule(job);
      this.end(job, 'canceled', null, SHUTDOWN_ERROR, false);
    }
    const stopped = [...this.lanes.values()].map((lane) => lane.pool.stop());
    for (const lane of this.lanes.values()) {
      const queued = lane.fifo.drain();
      for (const job of queued) {
        job.ticket = null;
        this.deps.log.debug({ jobId: job.id, queue: lane.name }, 'queued job canceled at shutdown');
        this.end(job, 'canceled', null, SHUTDOWN_ERROR, false);
      }
      if (queued.length > 0) this.deps.log.info({ queue: lane.name, canceled: queued.length }, 'queued jobs canceled at shutdown');
    }
    await Promise.all(stopped);
  }

  async close(drained: Promise<void>): Promise<void> {
    await drained;
    this.store.clear(); // the output files go with their jobs; the directory goes with the instance (ops/data-dir.ts)
  }

  private take(lane: Lane): MemoryJob | undefined {
    const job = lane.fifo.shift();
    if (job) job.ticket = null;
    return job;
  }

  /** The one way a job ends here: stamp it, close its output, wake its waiters, retain it. */
  private end(job: MemoryJob, state: TerminalState, result: JobResult | null = null, error: JobError | null = null, log = true): void {
    const patch: { result?: JobResult; error?: JobError } = {};
    if (result) patch.result = result;
    if (error) patch.error = error;
    transition(job, state, patch);
    job.spec = redactSpec(job.spec);
    job.fullSpec = null;
    job.runAt = null;
    job.output?.close();
    // A job that wrote nothing keeps the shared empty output, not two OutputLogs (see finished-output.ts).
    if (job.output && isEmptyFinished(job.output)) job.output = EMPTY_FINISHED_OUTPUT;
    if (log) {
      const { id: jobId, queue } = job;
      const { result, error } = job;
      const fields = { jobId, queue, state, returncode: result?.returncode, durationMs: result?.durationMs, error: error?.code };
      this.finishLog.info(fields, 'job finished');
    }
    this.hooks.ended(job.id);
    this.emit('finished', job);
    this.store.finish(job);
  }

  private outputOf(job: MemoryJob): NonNullable<MemoryJob['output']> {
    // A job that ended before it started wrote nothing.
    if (!job.output && isTerminal(job.state)) job.output = EMPTY_FINISHED_OUTPUT;
    return job.output ?? this.liveOutput(job);
  }

  /** The output an attempt writes to. */
  private liveOutput(job: MemoryJob): JobOutput {
    if (job.output instanceof JobOutput) return job.output;
    const output = new JobOutput({
      dir: this.outputDir,
      jobId: job.id,
      memoryBytes: this.config.outputMemoryBytes,
      // The policy's ceiling when it lowered the cap (the grant says so only then), else the request's, else the server's.
      maxBytes: job.grant?.maxOutputBytes ?? job.spec.maxOutputBytes ?? this.config.maxOutputBytes,
      // The process runs on (docs/operations.md, "A full disk"): result.truncatedReason says why its output stops.
      onError: (err, stream) =>
        this.deps.log.warn(
          { err, jobId: job.id, stream, reason: writeFailureReason(err) },
          'job output could not be written; the rest of the stream is dropped, the process runs on',
        ),
    });
    job.output = output;
    return output;
  }

  private toView(job: MemoryJob): Job {
    const position = job.ticket === null ? null : (this.lanes.get(job.queue)!.fifo.positionOf(job.ticket) ?? null);
    const bytes = job.output ? { stdout: job.output.end('stdout'), stderr: job.output.end('stderr') } : { stdout: 0, stderr: 0 };
    return toJobView(job, position, bytes);
  }

  private emit(name: keyof JobQueueEvents, job: MemoryJob): void {
    if (this.events.listenerCount(name) > 0) this.events.emit(name, this.toView(job), job.ownerId);
  }
}
