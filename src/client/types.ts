/**
 * The server's own types, from its zod schemas. `import type` only: the client bundle carries no zod.
 */
import type { Info } from '../schemas/info.js';
import type { Job, JobList, JobRequest, QueueInfo } from '../schemas/jobs.js';
import type { PolicyDecision } from '../schemas/policy.js';
import type { Process, ProcessList } from '../schemas/processes.js';
import type { CommandSpec, RunRequest, RunResult } from '../schemas/run.js';
import type { ErrorFrame, ExitFrame, GapFrame, JobEventFrame, LaggedFrame, StateFrame } from '../schemas/stream.js';
import type { CallRequest, CheckOutputRequest, CompletedProcess, GetoutputRequest, SubprocessRunRequest } from '../schemas/subprocess.js';
import type { JobState } from '../schemas/constants.js';

export type {
  CallRequest, CheckOutputRequest, CommandSpec, CompletedProcess, ErrorFrame, ExitFrame, GapFrame, GetoutputRequest, Info, Job,
  JobEventFrame, JobList, JobRequest, JobState, LaggedFrame, PolicyDecision, Process, ProcessList, QueueInfo, RunRequest, RunResult,
  StateFrame, SubprocessRunRequest,
};

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

/** Byte offsets per stream: where to start (or resume). */
export interface Offsets {
  stdout?: number;
  stderr?: number;
}
