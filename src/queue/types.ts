import type { EventEmitter } from 'node:events';
import type { Job, JobList, QueueInfo } from '../schemas/jobs.js';
import type { NotifyStatus } from '../schemas/notify.js';
import type { CommandSpec } from '../schemas/run.js';
import type { Grant } from '../spec/grant.js';
import type { JobState } from './job.js';
import type { JobOutputReader } from './job-output.js';

/**
 * The job queue as the rest of execd sees it: one front (front.ts) over a
 * backend (backend.ts: memory/ by default, or redis/), so routes, the
 * WebSocket viewers and the operations code never know which one runs.
 *
 * Everything crosses this line as plain JSON-able values in the API's shapes
 * (`Job`, `QueueInfo`), so a backend may keep them anywhere. Refusals are
 * QueueErrors (errors.ts): UnknownQueue, JobNotFound, Conflict (idempotency
 * key reused with another body; job not in a state that allows the
 * operation), QueueFull, BackendUnavailable, ShuttingDown.
 *
 * Ownership: each job keeps the token id that submitted it (`ownerId`) and
 * the policy grant it was admitted with, on the record but never in the Job
 * view. The routes check `canSee(principal, await ownerOf(id))` before any
 * operation on one job and answer 404 when it fails; `list` filters by owner
 * itself (so cursor pages stay exact); events carry the owner for the same check.
 */
export interface JobQueue {
  readonly backend: string;
  /** Lifecycle events of every job; listeners must not throw or block. */
  readonly events: EventEmitter<JobQueueEvents>;

  /** Accept a job (FIFO within its queue). With an idempotency key its owner already used: the same body → that job, created false. */
  submit(request: SubmitRequest): Promise<Submitted>;
  get(id: string): Promise<Job | undefined>;
  /** The token id that owns the job (null: none, admins only); undefined for an unknown id. */
  ownerOf(id: string): Promise<string | null | undefined>;
  /**
   * Acceptance order, oldest first (or newest first with `order: 'desc'`); a cursor continues past the last job of the
   * previous page in the same order, so every job is listed once.
   */
  list(request: ListRequest): Promise<JobList>;
  /**
   * Queued: canceled at once. Running: the group gets SIGTERM, SIGKILL after the grace; resolves once the job is
   * terminal. Terminal: unchanged.
   */
  cancel(id: string): Promise<Job>;
  /** Signal a running job's process group; CONFLICT when it is not running. */
  signal(id: string, signal: NodeJS.Signals): Promise<Job>;
  /** Forget a terminal job and its output; CONFLICT when it is not terminal. */
  remove(id: string): Promise<void>;
  /**
   * Record how a job's completion callback goes (src/notify) on its record, for the Job's `notify`. With `first`, only
   * when none is recorded yet: the one node whose call succeeds delivers it. False when the job is gone (or taken).
   */
  recordNotify(id: string, status: NotifyStatus, first: boolean): Promise<boolean>;
  /** The job once terminal, or as it is after `timeoutMs` (or when `abort` fires); undefined for an unknown id. */
  waitForTerminal(id: string, timeoutMs: number, abort?: AbortSignal): Promise<Job | undefined>;
  /** The job's output (empty while queued); undefined for an unknown id. */
  output(id: string): Promise<JobOutputReader | undefined>;
  /**
   * Write to a job's streaming stdin (`stdin: {"stream": true}`); null ends it. False when it cannot take input.
   * Resolves once the pipe has room again, so a writer that awaits each call never makes the server buffer more than
   * the pipe's high-water mark.
   */
  writeStdin(id: string, data: Buffer | null): Promise<boolean>;
  /** Set a running job's terminal size (`tty`; the process gets SIGWINCH). False when it has no terminal or no live process. */
  resize(id: string, cols: number, rows: number): Promise<boolean>;
  queues(): Promise<QueueInfo[]>;
  /**
   * First step of a graceful shutdown: refuse new jobs (SHUTTING_DOWN), cancel the queued ones
   * (state `canceled`, error code SHUTTING_DOWN) and start no more; running jobs go on.
   * Resolves once none runs. Idempotent (same promise); `close()` afterwards terminates what still runs.
   */
  drain(): Promise<void>;
  /** Stop: refuse new jobs, cancel queued ones, terminate running ones, wait for them. Idempotent (same promise). */
  close(): Promise<void>;
}

export interface SubmitRequest {
  queue: string;
  spec: CommandSpec;
  /** The submitting token's id: the job's owner. Idempotency keys are per owner. */
  ownerId: string;
  /** What the policy gate granted (admitCommand); applied to the RunSpec when the job starts. */
  grant: Grant;
  idempotencyKey?: string;
  /** Delayed start (notBefore / delayMs): epoch ms before which the job stays `scheduled`; absent or past: queued now. */
  runAt?: number | undefined;
}

export interface Submitted {
  job: Job;
  /** False when an earlier job with the same idempotency key and body was answered. */
  created: boolean;
}

export type ListOrder = 'asc' | 'desc';

export interface ListRequest {
  state?: JobState;
  queue?: string;
  /** Only the jobs of this token id; undefined lists every job (admin). */
  owner?: string | undefined;
  limit: number;
  /** Default asc (oldest first). */
  order?: ListOrder | undefined;
  /** The backend's own position (digits): the nextCursor of a page in the same order. */
  cursor?: string | undefined;
  /** Only jobs with every one of these labels (key, value). */
  labels?: readonly (readonly [string, string])[] | undefined;
}

/**
 * `queued` on acceptance, `started` once the process runs (pid set), `finished` on any terminal state.
 * `ownerId` is the job's owner, for listeners that show events to tokens (canSee).
 */
export interface JobQueueEvents {
  queued: [job: Job, ownerId: string | null];
  started: [job: Job, ownerId: string | null];
  finished: [job: Job, ownerId: string | null];
}

export type JobEventName = keyof JobQueueEvents;
