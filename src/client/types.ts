/**
 * The server's own types, from its zod schemas. `import type` only: the client bundle carries no zod.
 */
import type { Info } from '../schemas/info.js';
import type { Job, JobList, JobRequest, QueueInfo } from '../schemas/jobs.js';
import type { NotifyStatus } from '../schemas/notify.js';
import type { PolicyDecision } from '../schemas/policy.js';
import type { Process, ProcessList } from '../schemas/processes.js';
import type { CommandSpec, RunRequest, RunResult } from '../schemas/run.js';
import type { ErrorFrame, ExitFrame, GapFrame, JobEventFrame, LaggedFrame, StateFrame } from '../schemas/stream.js';
import type { CallRequest, CheckOutputRequest, CompletedProcess, GetoutputRequest, SubprocessRunRequest } from '../schemas/subprocess.js';
import type { JobState } from '../schemas/constants.js';

export type {
  CallRequest, CheckOutputRequest, CommandSpec, CompletedProcess, ErrorFrame, ExitFrame, GapFrame, GetoutputRequest, Info, Job,
  JobEventFrame, JobList, JobRequest, JobState, LaggedFrame, NotifyStatus, PolicyDecision, Process, ProcessList, QueueInfo, RunRequest,
  RunResult, StateFrame, SubprocessRunRequest,
};

/** One attempt of a job (retries: docs/jobs.md): which node and host ran it, how it ended, where its output begins. */
export type JobAttempt = Job['attempts'][number];

export type StreamName = 'stdout' | 'stderr';

/** Bytes of one stream; `offset` is the byte offset of `data[0]` in that stream (the server's offsets). */
export interface OutputEvent {
  type: 'output';
  stream: StreamName;
  offset: number;
  data: Uint8Array;
}

/**
 * What jobs.stream() and jobs.follow() yield: output; state changes, gaps (bytes that will not come: not kept) and error
 * frames (stream only); and last `exit`.
 */
export type JobStreamEvent = OutputEvent | StateFrame | GapFrame | ErrorFrame | ExitFrame;

/** What events() yields: the server's frames, and `reconnected` after a dropped connection (events may have been missed: refetch). */
export type ClientEvent = JobEventFrame | LaggedFrame | { type: 'reconnected' };

export const TERMINAL_STATES: readonly JobState[] = ['succeeded', 'failed', 'timed_out', 'canceled', 'lost'];
export const isTerminal = (state: JobState): boolean => TERMINAL_STATES.includes(state);

/**
 * Label filters of jobs.list() and events(): `{team: 'web'}`, or `'team=web'` strings (split at the first `=`). Several are
 * ANDed: a job must have every one (GET /v1/jobs?label=k=v, repeated).
 */
export type LabelQuery = Readonly<Record<string, string>> | string | readonly string[];

/** A LabelQuery as the repeated `label` query parameter (undefined: no filter). */
export function labelParams(label: LabelQuery | undefined): string[] | undefined {
  if (label === undefined) return undefined;
  if (typeof label === 'string') return [label];
  if (Array.isArray(label)) return [...(label as readonly string[])];
  return Object.entries(label as Record<string, string>).map(([k, v]) => `${k}=${v}`);
}

/** Byte offsets per stream: where to start (or resume). */
export interface Offsets {
  stdout?: number;
  stderr?: number;
}
