import type { RunOutcome } from './types.js';

/** Why bytes of a stream were dropped: the cap (max_output), or the data directory refused them (disk_full, write_failed). */
export type TruncatedReason = 'max_output' | 'disk_full' | 'write_failed';

export interface PerStream<T> {
  stdout: T;
  stderr: T;
}

/**
 * How a run ended, the one shape a sync run answers (with its output beside
 * it, routes/run.ts) and a job keeps as its result (queue/): RunStatus in
 * schemas/run.ts documents it.
 */
export interface RunStatus {
  exitCode: number | null;
  signal: string | null;
  /** Python's returncode: the exit code, or minus the signal number. */
  returncode: number;
  truncated: PerStream<boolean>;
  /** Why bytes were dropped; null for a stream that lost none. */
  truncatedReason: PerStream<TruncatedReason | null>;
  timedOut: boolean;
  durationMs: number;
  pid: number;
  startedAt: string;
  finishedAt: string;
  /** The uid and gid the process ran as (the grant's run-as user, else the server's). */
  uid: number;
  gid: number;
  /** CPU time and peak memory from the kernel; null when the spawner cannot tell. */
  usage: RunOutcome['usage'];
}

/** The output facts a status carries: which streams lost bytes, and why. */
export interface OutputFacts {
  truncated: PerStream<boolean>;
  truncatedReason: PerStream<TruncatedReason | null>;
}

/** A captured run's output facts: only the cap drops bytes in memory. */
export function capturedOutput(truncated: PerStream<boolean>): OutputFacts {
  return {
    truncated,
    truncatedReason: { stdout: truncated.stdout ? 'max_output' : null, stderr: truncated.stderr ? 'max_output' : null },
  };
}

/** The status of a finished run: `ran` is the uid and gid it ran as (runner/ran-as.ts). */
export function runStatus(outcome: RunOutcome, returncode: number, output: OutputFacts, ran: { uid: number; gid: number }): RunStatus {
  return {
    exitCode: outcome.exitCode,
    signal: outcome.signal,
    returncode,
    truncated: output.truncated,
    truncatedReason: output.truncatedReason,
    timedOut: outcome.timedOut,
    durationMs: outcome.durationMs,
    pid: outcome.pid,
    startedAt: outcome.startedAt.toISOString(),
    finishedAt: outcome.finishedAt.toISOString(),
    uid: ran.uid,
    gid: ran.gid,
    usage: outcome.usage,
  };
}
