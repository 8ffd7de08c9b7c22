import { constants } from 'node:os';
import { killNoThrow } from './native-helper.js';

/**
 * Send a signal to a whole process group. Returns false when the group no longer exists.
 *
 * Every run ends with a kill of its group, which is usually empty by then (ESRCH). Through
 * the native addon that is an errno. process.kill throws instead, and building and throwing
 * that error is a visible share of a short run, even without a stack trace (docs/benchmarks.md).
 */
export function killProcessGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1) return false;
  const err = killNoThrow(-pgid, signal === 0 ? 0 : constants.signals[signal]);
  if (err !== null) return err === 0;
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    return false;
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** True while any process of the group is alive (zombies included). */
export const processGroupAlive = (pgid: number): boolean => killProcessGroup(pgid, 0);

/**
 * SIGTERM to the group now, SIGKILL after `graceMs` if anything in it still
 * lives. The returned function cancels the pending SIGKILL.
 */
export function terminateProcessGroup(pgid: number, graceMs: number): () => void {
  if (!killProcessGroup(pgid, 'SIGTERM')) return () => {};
  // A stopped process cannot act on SIGTERM until it is continued (systemd does the same).
  killProcessGroup(pgid, 'SIGCONT');
  if (graceMs === 0) {
    killProcessGroup(pgid, 'SIGKILL');
    return () => {};
  }
  const timer = setTimeout(() => killProcessGroup(pgid, 'SIGKILL'), graceMs);
  return () => clearTimeout(timer);
}

/** Signal names the API accepts, and their numbers. */
export const SIGNALS = constants.signals as Record<string, number>;

export const signalNumber = (name: string): number | undefined => SIGNALS[name];

export const isSignalName = (name: string): name is NodeJS.Signals =>
  Object.prototype.hasOwnProperty.call(SIGNALS, name);
