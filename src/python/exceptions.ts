import { DomainError } from '../errors.js';
import type { StreamName } from '../runner/index.js';
import { pyFloat, pyStr, pySignalRepr } from './pyrepr.js';

/**
 * Python's subprocess exceptions, with the attributes CPython gives them: in
 * the problem body beside the message (plugins/errors.ts answers them as
 * 422 COMMAND_FAILED and 422 TIMEOUT_EXPIRED). Python's OSError is the
 * runner's SpawnError, reworded (subprocess.ts).
 */

export type Args = string | string[];
/** A Python value as subprocess returns it: str (text mode), bytes, or None. */
export type PyValue = string | Buffer | null;

export const encodeValue = (value: PyValue): string | null => (value === null ? null : typeof value === 'string' ? value : value.toString('base64'));

/** str(CalledProcessError). */
export function calledProcessErrorStr(cmd: Args, returncode: number): string {
  if (returncode < 0) {
    const sig = pySignalRepr(-returncode);
    return sig === undefined
      ? `Command '${pyStr(cmd)}' died with unknown signal ${-returncode}.`
      : `Command '${pyStr(cmd)}' died with ${sig}.`;
  }
  return `Command '${pyStr(cmd)}' returned non-zero exit status ${returncode}.`;
}

/** subprocess.CalledProcessError: 422 COMMAND_FAILED with returncode, cmd, output and stderr. */
export class CalledProcessError extends DomainError {
  override name = 'CalledProcessError';
  readonly code = 'COMMAND_FAILED';
  constructor(
    readonly returncode: number,
    readonly cmd: Args,
    readonly output: PyValue,
    readonly stderrValue: PyValue,
    text: boolean,
    /** Captured streams that hit the output cap. */
    readonly truncated: StreamName[] = [],
  ) {
    super(calledProcessErrorStr(cmd, returncode), {
      exception: 'CalledProcessError',
      cmd,
      returncode,
      output: encodeValue(output),
      stderr: encodeValue(stderrValue),
      encoding: text ? 'utf8' : 'base64',
      ...(truncated.length > 0 ? { truncated } : {}),
    });
  }
}

/**
 * subprocess.TimeoutExpired: 422 TIMEOUT_EXPIRED. As in CPython 3.11 on POSIX,
 * the partial output is the raw bytes read so far (base64, even in text mode),
 * null when nothing was read.
 */
export class TimeoutExpired extends DomainError {
  override name = 'TimeoutExpired';
  readonly code = 'TIMEOUT_EXPIRED';
  constructor(cmd: Args, timeout: number, output: Buffer | null, stderr: Buffer | null) {
    super(`Command '${pyStr(cmd)}' timed out after ${pyFloat(timeout)} seconds`, {
      exception: 'TimeoutExpired',
      cmd,
      timeout,
      output: encodeValue(output),
      stderr: encodeValue(stderr),
      encoding: 'base64',
    });
  }
}
