import { REDACTED, type Job, type JobSpecView } from '../schemas/jobs.js';
import type { CommandSpec } from '../schemas/run.js';
import { initialNotify } from '../schemas/notify.js';
import type { AttemptRecord, JobRecord } from './job.js';
import { labelsOf, maxAttempts } from './retry.js';

const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The spec without env values or stdin bytes. Idempotent: a redacted spec redacts to itself. */
export function redactSpec(spec: CommandSpec): CommandSpec {
  if (spec.env === undefined && typeof spec.stdin !== 'string') return spec;
  const out: CommandSpec = { ...spec };
  if (spec.env) out.env = Object.fromEntries(Object.keys(spec.env).map((k) => [k, REDACTED]));
  if (typeof spec.stdin === 'string') out.stdin = REDACTED;
  return out;
}

/** A job record in the API's shape. */
export function toJobView(job: JobRecord, position: number | null, outputBytes: { stdout: number; stderr: number }): Job {
  return {
    id: job.id,
    state: job.state,
    queue: job.queue,
    position,
    createdAt: iso(job.createdAt)!,
    startedAt: iso(job.startedAt),
    finishedAt: iso(job.finishedAt),
    spec: redactSpec(job.spec) as JobSpecView,
    pid: job.pid,
    result: job.result,
    outputBytes,
    error: job.error,
    attempt: job.attempt,
    attempts: job.attempts.map(attemptView),
    maxAttempts: maxAttempts(job.spec),
    runAt: job.state === 'scheduled' ? iso(job.runAt) : null,
    labels: labelsOf(job.spec),
    node: job.node,
    notify: job.notify ?? initialNotify(job.spec),
  };
}

const attemptView = (a: AttemptRecord): Job['attempts'][number] => ({
  attempt: a.attempt,
  node: a.node,
  host: a.host,
  startedAt: iso(a.startedAt)!,
  finishedAt: iso(a.finishedAt),
  state: a.state,
  result: a.result,
  error: a.error,
  output: a.output,
});
