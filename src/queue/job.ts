import type { CommandSpec } from '../schemas/run.js';
import type { JobState } from '../schemas/constants.js';
import type { Grant } from '../spec/grant.js';
import type { RunStatus } from '../runner/status.js';
import type { NotifyStatus } from '../schemas/notify.js';

/**
 * A job's life: one closed union of states and ONE function, `transition`,
 * that moves between them. Nothing else writes `state` or the time stamps
 * (they are readonly everywhere but here).
 *
 *   scheduled ─► queued ─► running ─► succeeded | failed | timed_out | canceled | lost
 *      │  ▲          └────► canceled | lost     │
 *      │  └──────────────────────────────────────┘ a retry waits its backoff (retry.ts)
 *      └────► canceled | lost
 */
export { JOB_STATES, type JobState } from '../schemas/constants.js';
export type TerminalState = Exclude<JobState, 'scheduled' | 'queued' | 'running'>;

const NEXT: Record<JobState, readonly JobState[]> = {
  scheduled: ['queued', 'canceled', 'lost'],
  queued: ['running', 'canceled', 'lost'],
  running: ['succeeded', 'failed', 'timed_out', 'canceled', 'lost', 'scheduled'],
  succeeded: [],
  failed: [],
  timed_out: [],
  canceled: [],
  lost: [],
};

export const isTerminal = (state: JobState): state is TerminalState => NEXT[state].length === 0;
export const canTransition = (from: JobState, to: JobState): boolean => NEXT[from].includes(to);
/** The states `from` may move to (the Redis scripts get this table as their own: redis/commands.ts). */
export const nextStates = (from: JobState): readonly JobState[] => NEXT[from];

/** How the process ended: the run status a sync run answers too (runner/status.ts). */
export type JobResult = RunStatus;

/** Why a job did not run as asked (the process could not start, the server shut down…). */
export interface JobError {
  code: string;
  message: string;
  errno?: string;
}

export interface JobRecord {
  readonly id: string;
  /** Acceptance order across all queues: FIFO order and the list cursor. */
  readonly seq: number;
  readonly queue: string;
  readonly state: JobState;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  /** The token id that submitted the job: only it (and admin) sees the job. Null: admins only. Never in the public Job view. */
  readonly ownerId: string | null;
  /**
   * What the policy gate granted at submission (run-as user, cwd, ceilings, limits), applied when the job starts.
   * Null: never admitted, so it does not run.
   */
  readonly grant: Grant | null;
  readonly startedAt: number | null;
  readonly finishedAt: number | null;
  /** The request; env values and stdin are dropped from it once they are no longer needed. */
  spec: CommandSpec;
  pid: number | null;
  result: JobResult | null;
  error: JobError | null;
  /** Attempts started so far (0 until a worker first takes it). */
  attempt: number;
  /** One entry per attempt started, oldest first: where and when it ran, how it ended, where its output begins. */
  attempts: AttemptRecord[];
  /** While scheduled: when it is queued (epoch ms); null otherwise. */
  runAt: number | null;
  /** The node that accepted the job (EXECD_NODE_ID). */
  node: string | null;
  /** How its completion callback went, once a node took it on (src/notify); absent before, or without `notify`. */
  notify?: NotifyStatus | null;
}

/** One attempt of a job: a process started (or tried to) by one worker. */
export interface AttemptRecord {
  attempt: number;
  /** The node (EXECD_NODE_ID) and host that ran it. */
  node: string;
  host: string;
  startedAt: number;
  finishedAt: number | null;
  /** running while it runs; then the state it ended in (a retried attempt keeps its own: failed, timed_out, lost). */
  state: JobState;
  result: JobResult | null;
  error: JobError | null;
  /** Byte offsets in the job's output where this attempt's output begins (attempts append to the same log). */
  output: { stdout: number; stderr: number };
}

export class IllegalTransition extends Error {
  override name = 'IllegalTransition';
  constructor(
    readonly jobId: string,
    readonly from: JobState,
    readonly to: JobState,
  ) {
    super(`job ${jobId}: no transition ${from} -> ${to}`);
  }
}

export function newJobRecord(
  id: string,
  seq: number,
  queue: string,
  spec: CommandSpec,
  now = Date.now(),
  owner: { ownerId: string | null; grant: Grant | null } = { ownerId: null, grant: null },
): JobRecord {
  return {
    id,
    seq,
    queue,
    state: 'queued',
    createdAt: now,
    ownerId: owner.ownerId,
    grant: owner.grant,
    startedAt: null,
    finishedAt: null,
    spec,
    pid: null,
    result: null,
    error: null,
    attempt: 0,
    attempts: [],
    runAt: null,
    node: null,
  };
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Move a job to `to`, stamping `startedAt` on running and `finishedAt` on a
 * terminal state; throws IllegalTransition for any move the graph above lacks.
 */
export function transition<J extends JobRecord>(
  job: J,
  to: JobState,
  patch: { result?: JobResult; error?: JobError } = {},
  now = Date.now(),
): J {
  if (!canTransition(job.state, to)) throw new IllegalTransition(job.id, job.state, to);
  const w = job as Writable<JobRecord>;
  w.state = to;
  if (to === 'running') w.startedAt = now;
  if (isTerminal(to)) w.finishedAt = now;
  if (patch.result) w.result = patch.result;
  if (patch.error) w.error = patch.error;
  return job;
}
