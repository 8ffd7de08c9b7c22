import { constants } from 'node:os';
import { CommanderError } from 'commander';
import { ExecdError } from '../client/index.js';

/**
 * execd's own exit codes (docs/cli.md). `run`, `submit --follow` and `tail` otherwise exit with the
 * command's: its exit code, 128+n when signal n ended it (as shells do), 124 when it timed out (as timeout(1)).
 */
export const EXIT = {
  OK: 0,
  /** The command line is wrong (unknown option, missing argument, bad value). sysexits' EX_USAGE. */
  USAGE: 64,
  /** The server refused the request: any 4xx (bad input, bad token, missing scope, policy, no such job, conflict). */
  REFUSED: 65,
  /** No answer (connection refused, DNS, reset), or the server cannot do it now (5xx: draining, queue full). EX_UNAVAILABLE. */
  UNAVAILABLE: 69,
  /** Something execd's CLI itself did not expect. sysexits' EX_SOFTWARE. */
  SOFTWARE: 70,
  /** The command ran out of its timeout, as timeout(1). */
  TIMEOUT: 124,
  /** The job ended without an exit status: canceled before it started, or lost with its worker. */
  NO_STATUS: 125,
  /** The command could not be started (SPAWN_FAILED, other than "not found"), as shells say 126. */
  CANNOT_EXECUTE: 126,
  /** The program was not found (SPAWN_FAILED with ENOENT), as shells say 127. */
  NOT_FOUND: 127,
  /** Ctrl-C while following: detached, the job keeps running (128 + SIGINT). */
  DETACHED: 130,
} as const;

/** A mistake on the command line that commander cannot see (a bad --timeout, K=V…). */
export class UsageError extends Error {}

/** The status of a run or job, as a process exit code. */
export function exitCodeOf(s: { exitCode: number | null; signal: string | null; returncode: number | null; timedOut: boolean }): number {
  if (s.timedOut) return EXIT.TIMEOUT;
  if (s.exitCode !== null) return s.exitCode;
  if (s.returncode !== null && s.returncode < 0) return 128 - s.returncode;
  const n = s.signal === null ? undefined : (constants.signals as Record<string, number>)[s.signal];
  return n === undefined ? EXIT.NO_STATUS : 128 + n;
}

/** Exit code for a command that could not start (SPAWN_FAILED and its errno). */
export const spawnFailedCode = (errno: unknown): number => (errno === 'ENOENT' ? EXIT.NOT_FOUND : EXIT.CANNOT_EXECUTE);

/** Say what went wrong in one line on stderr; the exit code for it. */
export function report(err: unknown): number {
  if (err instanceof CommanderError) {
    // commander has printed its message (or the help) already.
    return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
  }
  if (err instanceof UsageError) {
    process.stderr.write(`execd: ${err.message} (see execd help)\n`);
    return EXIT.USAGE;
  }
  if (err instanceof ExecdError) {
    if (err.code === 'UNREACHABLE') {
      process.stderr.write(`execd: ${err.detail}: is the server running? (EXECD_URL or --url)\n`);
      return EXIT.UNAVAILABLE;
    }
    process.stderr.write(`execd: ${err.code}: ${err.detail}${explainRefusal(err)}\n`);
    if (err.code === 'SPAWN_FAILED') return spawnFailedCode(err.problem.errno);
    return err.refused ? EXIT.REFUSED : err.status >= 500 ? EXIT.UNAVAILABLE : EXIT.SOFTWARE;
  }
  process.stderr.write(`execd: ${err instanceof Error ? err.message : String(err)}\n`);
  return EXIT.SOFTWARE;
}

function explainRefusal(err: ExecdError): string {
  if (err.status === 401) return ' (EXECD_TOKEN or --token-file)';
  const rule = err.problem.rule;
  return typeof rule === 'string' && !err.detail.includes(rule) ? ` (rule ${rule})` : '';
}
