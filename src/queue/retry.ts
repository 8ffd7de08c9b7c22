import { DEFAULT_BACKOFF_MS, DEFAULT_RETRY_ON, MAX_BACKOFF_MS, type RetryRequest } from '../schemas/jobs.js';
import type { CommandSpec } from '../schemas/run.js';
import type { JobError, TerminalState } from './job.js';

/** The job-only options a stored spec carries (schemas/jobs.ts JobRequest): the spec travels with the job in both backends. */
interface JobOptions {
  retry?: RetryRequest;
  labels?: Record<string, string>;
}

const optionsOf = (spec: CommandSpec): JobOptions => spec as JobOptions;

/** Attempts a job may have in all: retry.attempts (the route capped it already), else 1. */
export function maxAttempts(spec: CommandSpec): number {
  return optionsOf(spec).retry?.attempts ?? 1;
}

export function labelsOf(spec: CommandSpec): Record<string, string> {
  return optionsOf(spec).labels ?? {};
}

/** Every `[key, value]` is among the job's labels. */
export function hasLabels(spec: CommandSpec, wanted: readonly (readonly [string, string])[] | undefined): boolean {
  if (!wanted || wanted.length === 0) return true;
  const labels = labelsOf(spec);
  return wanted.every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v);
}

/**
 * The wait before retry number `attempt` (the attempt that just ended is `attempt`), or null when the job is not
 * retried: its policy does not list this outcome, its attempts are spent, it was canceled or the server shut down.
 * Exponential: backoffMs × 2^(attempt - 1), capped at MAX_BACKOFF_MS. Lua mirror: redis/lua/common.lua `retryDelay`.
 */
export function retryDelay(spec: CommandSpec, attempt: number, state: TerminalState, error: JobError | null): number | null {
  const retry = optionsOf(spec).retry;
  if (!retry || attempt >= retry.attempts) return null;
  if (state !== 'failed' && state !== 'timed_out' && state !== 'lost') return null;
  if (error?.code === 'SHUTTING_DOWN') return null;
  if (!(retry.on ?? DEFAULT_RETRY_ON).includes(state)) return null;
  const base = retry.backoffMs ?? DEFAULT_BACKOFF_MS;
  const wait = retry.backoff === 'fixed' ? base : base * 2 ** Math.min(attempt - 1, 40);
  return Math.min(wait, MAX_BACKOFF_MS);
}
