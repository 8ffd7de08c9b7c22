import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import { ApiError } from '../errors.js';
import type { Job, JobList, QueueInfo } from '../schemas/jobs.js';
import type { CommandSpec } from '../schemas/run.js';
import type { Grant } from '../security/policy.js';
import { SERVER_GID, SERVER_UID } from '../security/identity.js';
import { flatLogger } from '../log.js';
import { startRunRetrying, type RunContext, type RunHandle, type RunSpec } from '../runner/index.js';
import { returncodeOf } from '../runner/result.js';
import { Fifo } from './fifo.js';
import { requestDigest } from './idempotency.js';
import { isTerminal, transition, type JobError, type JobResult, type TerminalState } from './job.js';
import { JobOutput } from './job-output.js';
import { writeFailureReason } from './output-log.js';
import { finalState, SHUTDOWN_ERROR, startError, toJobResult } from './outcome.js';
import { WorkerPool } from './pool.js';
import { newMemoryJob, type MemoryJob } from './memory-job.js';
import { StartGate } from './start-gate.js';
import { writeStdinInTurn } from './stdin.js';
import { JobStore } from './store.js';
import type { JobQueue, JobQueueEvents, ListRequest, SubmitRequest, Submitted } from './types.js';
import { redactSpec, toJobView } from './view.js';
import { Waiters } from './waiters.js';

interface Lane {
  name: string;
  fifo: Fifo<MemoryJob>;
  pool: WorkerPool<MemoryJob>;
  processed: number;
  failed: number;
}

export interface QueueDeps {
  runContext: RunContext;
  /** This instance's private directory (ops/data-dir.ts): output files go below it, and only there. */
  filesDir: string;
  /**
   * The runner's spec for a job, built when a worker takes it: the server's defaults, then the policy grant the job
   * was admitted with (run-as user, cwd, ceilings, limits). Throws (the job fails) for a job without a grant.
   */
  prepareRun: (spec: CommandSpec, grant: Grant | null) => RunSpec;
  log: FastifyBaseLogger;
  /** Each job process once started (the run tracker marks it for /v1/processes). */
  onRunStart?: (handle: RunHandle, jobId: string, ownerId: string | null) => void;
}

/** The default backend: queues, workers, records and output in this process. */
export class MemoryJobQueue implements JobQueue {
  readonly backend = 'memory';
  readonly events = new EventEmitter<JobQueueEvents>();
  private readonly lanes = new Map<string, Lane>();
  private readonly store: JobStore<MemoryJob>;
  private readonly waiters = new Waiters();
  private readonly running = new Set<MemoryJob>();
  /** Jobs that are running but whose process does not exist yet: a signal or stdin write to one waits for it here. */
  private readonly starting = new Map<string, StartGate>();
  private readonly outputDir: string;
  private seq = 0;
  private closing: Promise<void> | null = null;
  private draining: Promise<void> | null = null;
  /** `job finished`, one line per job with flat fields: the cheap logger (log.ts). */
  private readonly finishLog: FastifyBaseLogger;

  constructor(
    private readonly config: Config,
    private readonly deps: QueueDeps,
  ) {
    this.outputDir = join(deps.filesDir, 'jobs');
    mkdirSync(this.outputDir, { recursive: true, mode: 0o700 }); // at start, inside the instance's private directory
    this.finishLog = flatLogger(deps.log);
    this.store = new JobStore<MemoryJob>({
      retainJobs: config.retainJobs,
      retainMs: config.retainMs,
      onRemove: (job) => (job as MemoryJob).output?.dispose(),
    });
    for (const q of config.queues) {
      const lane: Lane = { name: q.name, fifo: new Fifo(config.queueCapacity, (job, t) => (job.ticket = t)), pool: null!, processed: 0, failed: 0 };
      lane.pool = new WorkerPool(q.concurrency, () => this.take(lane), (job) => this.run(job, lane));
      this.lanes.set(q.name, lane);
    }
  }

  async submit({ queue, spec, ownerId, grant, idempotencyKey }: SubmitRequest): Promise<Submitted> {
    if (this.draining) throw new ApiError('SHUTTING_DOWN', 'the server is shutting down and takes no new jobs');
    const lane = this.lanes.get(queue);
    if (!lane) throw unknownQueue(queue, [...this.lanes.keys()], 'body');
    let idempotency: MemoryJob['idempotency'] = null;
    if (idempotencyKey !== undefined) {
      idempotency = { key: idempotencyKey, digest: requestDigest(queue, spec) };
      const prior = this.store.byIdempotencyKey(ownerId, idempotencyKey);
      if (prior && prior.idempotency!.digest === idempotency.digest) return { job: this.view(prior), created: false };
      if (prior) throw new ApiError('CONFLICT', `Idempotency-Key was already used for job ${prior.id} with another body`, { jobId: prior.id });
    }
    if (lane.fifo.full) {
      throw new ApiError('QUEUE_FULL', `queue "${queue}" already holds ${lane.fifo.capacity} waiting jobs`, { queue }, { retryAfter: 1 });
    }
    const job = newMemoryJob(++this.seq, queue, spec, idempotency, ownerId, grant);
    job.ticket = lane.fifo.push(job);
    this.store.add(job);
    lane.pool.kick();
    this.emit('queued', job);
    return { job: this.view(job), created: true };
  }

  async get(id: string): Promise<Job | undefined> {
    const job = this.store.get(id);
    return job && this.view(job);
  }

  async ownerOf(id: string): Promise<string | null | undefined> {
    return this.store.get(id)?.ownerId;
  }

  async list({ state, queue, owner, limit, cursor }: ListRequest): Promise<JobList> {
    if (queue !== undefined && !this.lanes.has(queue)) throw unknownQueue(queue, [...this.lanes.keys()], 'querystring');
    const { items, more } = this.store.list({ state, queue, owner }, cursor === undefined ? 0 : Number(cursor), limit);
    return { items: items.map((j) => this.view(j)), nextCursor: more ? String(items[items.length - 1]!.seq) : null };
  }

  async cancel(id: string): Promise<Job> {
    const job = this.mustGet(id);
    if (job.state === 'queued') {
      this.lanes.get(job.queue)!.fifo.remove(job.ticket!);
      job.ticket = null;
      this.finish(job, 'canceled');
    } else if (job.state === 'running') {
      if (job.handle) job.handle.terminate('cancel');
      else job.stopReason ??= 'cancel';
      const grace = job.spec.killGraceMs ?? this.config.killGraceMs;
      await this.waiters.wait(job.id, grace + this.config.pipeDrainMs + 10_000);
    }
    return this.view(job);
  }

  async signal(id: string, signal: NodeJS.Signals): Promise<Job> {
    const job = this.mustGet(id);
    if (job.state !== 'running') {
      throw new ApiError('CONFLICT', `job ${id} is ${job.state}; only a running job can be signaled`, { state: job.state });
    }
    // Running but not started yet (a worker took it, its process is being spawned): the signal waits for the process.
    const handle = job.handle ?? (await this.starting.get(job.id)?.process()) ?? null;
    if (!handle || !handle.signal(signal)) {
      throw new ApiError('CONFLICT', `job ${id} has no live process to signal (it just exited, or never started)`, { state: job.state });
    }
    return this.view(job);
  }

  async remove(id: string): Promise<void> {
    const job = this.mustGet(id);
    if (!isTerminal(job.state)) throw new ApiError('CONFLICT', `job ${id} is ${job.state}; cancel it first, only a finished job can be deleted`, { state: job.state });
    this.store.remove(job);
  }

  async waitForTerminal(id: string, timeoutMs: number, abort?: AbortSignal): Promise<Job | undefined> {
    const job = this.store.get(id);
    if (!job) return undefined;
    if (!isTerminal(job.state) && timeoutMs > 0) await this.waiters.wait(id, timeoutMs, abort);
    return this.view(job);
  }

  async output(id: string): Promise<JobOutput | undefined> {
    const job = this.store.get(id);
    return job && this.outputOf(job);
  }

  async writeStdin(id: string, data: Buffer | null): Promise<boolean> {
    const job = this.store.get(id);
    if (!job) return false;
    // A job running but not started yet: the write waits for its process, as a signal does.
    const handle = job.handle ?? (await this.starting.get(id)?.process()) ?? null;
    if (!handle) return false;
    return writeStdinInTurn(handle, data); // a writer waits while the child does not read: the pipe's buffer stays bounded
  }

  async queues(): Promise<QueueInfo[]> {
    return [...this.lanes.values()].map((l) => ({
      name: l.name,
      concurrency: l.pool.concurrency,
      running: l.pool.running,
      queued: l.fifo.size,
      capacity: l.fifo.capacity,
      processed: l.processed,
      failed: l.failed,
    }));
  }

  drain(): Promise<void> {
    return (this.draining ??= this.stopIntake());
  }

  close(): Promise<void> {
    return (this.closing ??= this.shutdown());
  }

  /** No job starts from now on; the queued ones are canceled; resolves when the running ones are done. */
  private async stopIntake(): Promise<void> {
    const stopped = [...this.lanes.values()].map((lane) => lane.pool.stop());
    for (const lane of this.lanes.values()) {
      const queued = lane.fifo.drain();
      for (const job of queued) {
        job.ticket = null;
        this.deps.log.debug({ jobId: job.id, queue: lane.name }, 'queued job canceled at shutdown');
        this.finish(job, 'canceled', { error: SHUTDOWN_ERROR }, undefined, false);
      }
      if (queued.length > 0) this.deps.log.info({ queue: lane.name, canceled: queued.length }, 'queued jobs canceled at shutdown');
    }
    await Promise.all(stopped);
  }

  private async shutdown(): Promise<void> {
    const drained = this.drain();
    for (const job of this.running) {
      if (job.handle) job.handle.terminate('shutdown');
      else job.stopReason ??= 'shutdown';
    }
    await drained;
    this.waiters.notifyAll();
    this.store.clear(); // the output files go with their jobs; the directory goes with the instance (services/index.ts)
  }

  private take(lane: Lane): MemoryJob | undefined {
    const job = lane.fifo.shift();
    if (job) job.ticket = null;
    return job;
  }

  /** A worker's turn: start the job's process and wait for it. */
  private async run(job: MemoryJob, lane: Lane): Promise<void> {
    try {
      transition(job, 'running');
      this.running.add(job);
      this.starting.set(job.id, new StartGate());
      const spec = job.spec;
      job.spec = redactSpec(spec);
      const output = this.outputOf(job);
      let handle: RunHandle;
      let runSpec: RunSpec;
      try {
        runSpec = this.deps.prepareRun(spec, job.grant);
        handle = await startRunRetrying(runSpec, output, this.deps.runContext, () => job.stopReason !== null); // out of resources: a few tries
      } catch (err) {
        if (startError(err).code === 'INTERNAL') this.deps.log.error({ err, jobId: job.id }, 'job could not be started');
        const error = job.stopReason === 'shutdown' ? SHUTDOWN_ERROR : startError(err);
        this.finish(job, job.stopReason ? 'canceled' : 'failed', { error }, lane);
        return;
      }
      job.pid = handle.pid;
      job.handle = handle;
      this.deps.onRunStart?.(handle, job.id, job.ownerId);
      if (job.stopReason) handle.terminate(job.stopReason);
      this.processStarted(job, handle);
      this.deps.log.debug({ jobId: job.id, queue: job.queue, pid: handle.pid }, 'job started');
      this.emit('started', job);
      const outcome = await handle.done;
      job.handle = null;
      const returncode = returncodeOf(outcome);
      const state = finalState(outcome, returncode);
      const error = outcome.terminationReason === 'shutdown' ? SHUTDOWN_ERROR : undefined;
      const ran = { uid: runSpec.uid ?? SERVER_UID, gid: runSpec.gid ?? SERVER_GID };
      const patch: { result: JobResult; error?: JobError } = { result: toJobResult(outcome, returncode, output, ran) };
      if (error) patch.error = error;
      this.finish(job, state, patch, lane);
    } catch (err) {
      this.deps.log.error({ err, jobId: job.id }, 'job worker failed');
      if (!isTerminal(job.state)) this.finish(job, 'failed', { error: { code: 'INTERNAL', message: 'the worker failed; the error has been logged' } }, lane);
    }
  }

  /** The one way a job ends: stamp it, close its output, count it, wake its waiters, retain it. */
  private finish(job: MemoryJob, state: TerminalState, patch: { result?: JobResult; error?: JobError } = {}, lane?: Lane, log = true): void {
    transition(job, state, patch);
    this.running.delete(job);
    this.processStarted(job, null);
    job.spec = redactSpec(job.spec);
    job.output?.close();
    if (lane) {
      lane.processed++;
      if (state === 'failed' || state === 'timed_out') lane.failed++;
    }
    if (log) this.finishLog.info(
      { jobId: job.id, queue: job.queue, state, returncode: job.result?.returncode, durationMs: job.result?.durationMs, error: job.error?.code },
      'job finished',
    );
    this.waiters.notify(job.id);
    this.emit('finished', job);
    this.store.finish(job);
  }

  /** The start is over (`handle`: the process; null: none): what waited for the process gets it. */
  private processStarted(job: MemoryJob, handle: RunHandle | null): void {
    const gate = this.starting.get(job.id);
    if (!gate) return;
    this.starting.delete(job.id);
    gate.open(handle);
  }

  private outputOf(job: MemoryJob): JobOutput {
    if (!job.output) {
      job.output = new JobOutput({
        dir: this.outputDir,
        jobId: job.id,
        memoryBytes: this.config.outputMemoryBytes,
        // The policy's ceiling when it lowered the cap (the grant says so only then), else the request's, else the server's.
        maxBytes: job.grant?.maxOutputBytes ?? job.spec.maxOutputBytes ?? this.config.maxOutputBytes,
        // The process runs on (docs/operations.md, "A full disk"): result.truncatedReason says why its output stops.
        onError: (err, stream) =>
          this.deps.log.warn({ err, jobId: job.id, stream, reason: writeFailureReason(err) }, 'job output could not be written; the rest of the stream is dropped, the process runs on'),
      });
      if (isTerminal(job.state)) job.output.close();
    }
    return job.output;
  }

  private mustGet(id: string): MemoryJob {
    const job = this.store.get(id);
    if (!job) throw new ApiError('NOT_FOUND', `no job ${JSON.stringify(id.slice(0, 64))}`);
    return job;
  }

  private view(job: MemoryJob): Job {
    const position = job.ticket === null ? null : (this.lanes.get(job.queue)!.fifo.positionOf(job.ticket) ?? null);
    const bytes = job.output ? { stdout: job.output.end('stdout'), stderr: job.output.end('stderr') } : { stdout: 0, stderr: 0 };
    return toJobView(job, position, bytes);
  }

  private emit(name: keyof JobQueueEvents, job: MemoryJob): void {
    if (this.events.listenerCount(name) > 0) this.events.emit(name, this.view(job), job.ownerId);
  }
}

function unknownQueue(queue: string, known: string[], where: 'body' | 'querystring'): ApiError {
  const message = `no queue "${queue}" on this server (queues: ${known.join(', ')})`;
  return new ApiError('VALIDATION_FAILED', message, { errors: [{ in: where, path: '/queue', message }] });
}
