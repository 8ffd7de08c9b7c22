import { BoundedCapture, teeSinks, type OutputSink } from './output.js';
import { startRun, type RunContext, type RunHandle } from './run.js';
import { signalNumber } from './terminate.js';
import type { RunOutcome, RunSpec } from './types.js';

export interface CompletedRun {
  outcome: RunOutcome;
  stdout: Buffer;
  stderr: Buffer;
  truncated: { stdout: boolean; stderr: boolean };
  /** Python's returncode: the exit code, or minus the signal number. */
  returncode: number;
}

/** Python's view of an exit status. */
export function returncodeOf(outcome: Pick<RunOutcome, 'exitCode' | 'signal'>): number {
  if (outcome.exitCode !== null) return outcome.exitCode;
  return outcome.signal ? -(signalNumber(outcome.signal) ?? 0) : -1;
}

/** Run a command to its end, capturing each stream up to maxOutputBytes. Rejects only with SpawnError or ResourceExhaustedError. */
export async function runToCompletion(
  spec: RunSpec,
  ctx: RunContext,
  hooks: { onStart?: (handle: RunHandle) => void; sink?: OutputSink } = {},
): Promise<CompletedRun> {
  const capture = new BoundedCapture(spec.maxOutputBytes);
  const handle = await startRun(spec, hooks.sink ? teeSinks(capture, hooks.sink) : capture, ctx);
  hooks.onStart?.(handle);
  const outcome = await handle.done;
  return {
    outcome,
    stdout: capture.bytes('stdout'),
    stderr: capture.bytes('stderr'),
    truncated: { stdout: capture.truncated('stdout'), stderr: capture.truncated('stderr') },
    returncode: returncodeOf(outcome),
  };
}
