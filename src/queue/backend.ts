import type { EventEmitter } from 'node:events';
import type { FastifyBaseLogger } from 'fastify';
import type { Job, JobList, QueueInfo } from '../schemas/jobs.js';
import type { NotifyStatus } from '../schemas/notify.js';
import type { CommandSpec } from '../schemas/run.js';
import type { Grant } from '../spec/grant.js';
import type { OutputSink, RunContext, RunHandle, RunSpec } from '../runner/index.js';
import type { JobError, JobResult, JobState, TerminalState } from './job.js';
import type { JobOutputReader } from './job-output.js';
import type { ControlMessage, LocalRun, LocalRuns } from './local-runs.js';
import type { JobQueueEvents, ListRequest } from './types.js';

/**
 * The narrow seam under the queue: a backend stores jobs and delivers them,
 * nothing more. The front (front.ts: submit, idempotency, cancel, signal,
 * stdin, views, long-polls) and the worker loop (worker.ts) are written once
 * over it; `memory/` and `redis/` implement it. Refusals that only the
 * storage can see (it is away, an identical submit is still being accepted)
 * are QueueErrors (errors.ts); every other answer is a value.
 */
export interface JobBackend<C extends Claim = Claim> {
  readonly name: string;
  /** The queue names jobs may be submitted to. */
  readonly queueNames: readonly string[];
  /** queued / started / finished, with the job's owner (see JobQueue.events). */
  readonly events: EventEmitter<JobQueueEvents>;

  /** Store a job (queued, FIFO within its queue); an idempotency key its owner used before answers that job or a conflict. */
  accept(request: Acceptance): Promise<Accepted>;
  view(id: string): Promise<Job | undefined>;
  ownerOf(id: string): Promise<string | null | undefined>;
  list(request: ListRequest): Promise<JobList>;
  output(id: string): Promise<JobOutputReader | undefined>;
  queues(): Promise<QueueInfo[]>;
  /** A queued job ends canceled at once; a running one is told to stop (its worker ends it). */
  cancel(id: string): Promise<CancelOutcome>;
  /** Carry a signal or stdin write to the process of a running job, wherever it runs. */
  control(id: string, msg: Exclude<ControlMessage, { op: 'cancel' }>): Promise<ControlOutcome>;
  /** Forget a terminal job and its output. */
  remove(id: string): Promise<RemoveOutcome>;
  /**
   * Record how a job's completion callback goes (src/notify) on its record, for the Job's `notify`. With `first`, only
   * when none is recorded yet: the one node whose call succeeds delivers it. False when the job is gone (or taken).
   */
  recordNotify(id: string, status: NotifyStatus, first: boolean): Promise<boolean>;

  /** The worker side: take a delivered job (null: it is not to run), its process exists, it ended. */
  claim(id: string, run: LocalRun): Promise<C | null>;
  markStarted(claim: C, pid: number): Promise<void>;
  finish(claim: C, state: TerminalState, result: JobResult | null, error: JobError | null): Promise<void>;

  /** Deliver no more jobs to this process's workers; resolves once none of its runs is left. */
  drain(): Promise<void>;
  /** The shutdown begins: take no more requests once `drained` (the runs ended) resolves, then release everything. */
  close(drained: Promise<void>): Promise<void>;
}

/** What the front gives a backend when it makes it. */
export interface BackendHooks {
  /** The jobs this process runs: control messages meet their processes here. */
  runs: LocalRuns;
  /** The one worker loop: run a delivered job to its end; never rejects. */
  work(id: string): Promise<void>;
  /** A job became terminal or was removed: long-polls on it wake. */
  ended(id: string): void;
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

export interface Acceptance {
  queue: string;
  spec: CommandSpec;
  ownerId: string;
  grant: Grant;
  /** The Idempotency-Key and the digest of the body it came with (idempotency.ts). */
  idempotency: { key: string; digest: string } | null;
  /** Delayed start: epoch ms before which the job is `scheduled` (null: queued now). */
  runAt: number | null;
}

export type Accepted =
  | { kind: 'created'; job: Job }
  | { kind: 'duplicate'; job: Job }
  | { kind: 'conflict'; jobId: string }
  | { kind: 'full'; capacity: number };

export type CancelOutcome =
  | { kind: 'unknown' }
  /** It was queued and is canceled now, or it had ended already. */
  | { kind: 'settled' }
  /** It runs: its worker was told; `killGraceMs` is the job's own grace when the backend knows it. */
  | { kind: 'stopping'; killGraceMs?: number };

export type ControlOutcome = { kind: 'unknown' } | { kind: 'not-running'; state: JobState } | { kind: 'delivered'; ok: boolean };

export type RemoveOutcome = { kind: 'removed' } | { kind: 'unknown' } | { kind: 'not-terminal'; state: JobState };

/** A job a worker took: the full spec (env values and stdin included), its grant and owner, where its output goes. */
export interface Claim {
  id: string;
  /** Its queue, where the backend keeps it at hand (for logs). */
  queue?: string;
  spec: CommandSpec;
  grant: Grant | null;
  ownerId: string | null;
  output: OutputSink & Pick<JobOutputReader, 'truncated' | 'truncatedReason'>;
}
