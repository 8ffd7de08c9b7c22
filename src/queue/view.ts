import { REDACTED, type Job, type JobSpecView } from '../schemas/jobs.js';
import type { CommandSpec } from '../schemas/run.js';
import { initialNotify } from '../schemas/notify.js';
import type { AttemptRecord, JobRecord } from './job.js';
import { labelsOf, maxAttempts } from './retry.js';

/**
 * Two seconds formatted ("2026-12-06T21:47:25."), the last two asked for: a job's views share them (created in one
 * second, started and finished in another), and so do the views of the jobs accepted within a second.
 */
const seconds = [NaN, NaN];
const prefixes = ['', ''];
let older = 0;
const YEAR_10000 = 253_402_300_800_000; // from then on toISOString has six-digit years
/** "000Z" … "999Z". */
const MILLIS = Array.from({ length: 1000 }, (_, i) => `${String(i).padStart(3, '0')}Z`);

/** Epoch ms as Date#toISOString gives it, without a Date and its formatting per time stamp. */
function iso(ms: number | null): string | null {
  if (ms === null) return null;
  const rest = ms % 1000;
  const millis = MILLIS[rest]; // undefined for a negative or fractional rest
  if (millis === undefined || ms >= YEAR_10000) return new Date(ms).toISOString(); // never for a job's times: the plain way
  const second = ms - rest;
  if (second === seconds[0]) return prefixes[0] + millis;
  if (second === seconds[1]) return prefixes[1] + millis;
  const slot = older;
  older = 1 - slot;
  seconds[slot] = second;
  prefixes[slot] = new Date(second).toISOString().slice(0, 20);
  return prefixes[slot] + millis;
}

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
