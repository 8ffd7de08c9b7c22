import { ApiError, DomainError } from '../errors.js';
import { ResourceExhaustedError, SpawnError, type RunOutcome } from '../runner/index.js';
import { runStatus } from '../runner/status.js';
import type { JobError, JobResult, TerminalState } from './job.js';
import type { JobOutputReader } from './job-output.js';

/** The terminal state a finished process puts its job in. */
export function finalState(outcome: RunOutcome, returncode: number): TerminalState {
  if (outcome.terminationReason === 'cancel' || outcome.terminationReason === 'shutdown') return 'canceled';
  if (outcome.timedOut) return 'timed_out';
  return returncode === 0 ? 'succeeded' : 'failed';
}

/** `ran`: the uid and gid the process ran as (the RunSpec's, else the server's). */
export function toJobResult(
  outcome: RunOutcome,
  returncode: number,
  output: Pick<JobOutputReader, 'truncated' | 'truncatedReason'>,
  ran: { uid: number; gid: number },
): JobResult {
  return runStatus(
    outcome,
    returncode,
    {
      truncated: { stdout: output.truncated('stdout'), stderr: output.truncated('stderr') },
      truncatedReason: { stdout: output.truncatedReason('stdout'), stderr: output.truncatedReason('stderr') },
    },
    ran,
  );
}

/** A result stored by a version without truncatedReason (Redis): a truncation then could only be the cap. */
export function withTruncatedReason(result: JobResult | null): JobResult | null {
  if (result === null || result.truncatedReason !== undefined) return result;
  const reason = (truncated: boolean) => (truncated ? 'max_output' : null);
  return { ...result, truncatedReason: { stdout: reason(result.truncated.stdout), stderr: reason(result.truncated.stderr) } };
}

/** Why a job's process could not be started, without stacks or server paths. */
export function startError(err: unknown): JobError {
  if (err instanceof SpawnError) return { code: 'SPAWN_FAILED', message: err.message, errno: err.errno };
  // Nothing ran; the job fails with a code that says so (resubmit it; docs/operations.md).
  if (err instanceof ResourceExhaustedError) return { code: 'RESOURCE_EXHAUSTED', message: err.message, errno: err.errno };
  if (err instanceof ApiError) return { code: err.code, message: err.message };
  // CommandNotAllowed (a job without a grant): its code is the API's.
  if (err instanceof DomainError) return { code: err.code as JobError['code'], message: err.message };
  return { code: 'INTERNAL', message: 'the job could not be started; the error has been logged' };
}

export const SHUTDOWN_ERROR: JobError = { code: 'SHUTTING_DOWN', message: 'the server shut down' };
