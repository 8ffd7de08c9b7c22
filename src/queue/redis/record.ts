import type { Job } from '../../schemas/jobs.js';
import type { NotifyStatus } from '../../schemas/notify.js';
import type { CommandSpec } from '../../schemas/run.js';
import { newJobRecord, type AttemptRecord, type JobError, type JobRecord, type JobResult, type JobState } from '../job.js';
import { withTruncatedReason } from '../outcome.js';
import { toJobView } from '../view.js';

/** The record fields a view or an event carries, in this order (HMGET, the scripts' `fields`). */
export const FIELDS = [
  'id', 'seq', 'queue', 'state', 'createdAt', 'startedAt', 'finishedAt', 'owner', 'spec', 'pid', 'result', 'error',
  'obo', 'obe', 'confirmBy', 'notify', 'attempt', 'attempts', 'runAt', 'accepted',
] as const;

/** A record's fields as Redis gives them (FIELDS order): strings; false or null when absent. */
export type Flat = readonly (string | number | false | null)[];

/** A job record read from Redis, decoded once. */
export interface StoredRecord extends JobRecord {
  outputBytes: { stdout: number; stderr: number };
  /** Its submit is not confirmed yet (its client may still get a 503): not a job to show. */
  unconfirmed: boolean;
}

const str = (v: Flat[number] | undefined): string | null => (typeof v === 'string' && v !== '' ? v : typeof v === 'number' ? String(v) : null);
const num = (v: Flat[number] | undefined): number | null => (str(v) === null ? null : Number(v));
const json = <T>(v: Flat[number] | undefined, absent: T): T => {
  const s = str(v);
  return s === null ? absent : (JSON.parse(s) as T);
};

/** The record in FIELDS order, or null when there is none. */
export function decodeRecord(flat: Flat): StoredRecord | null {
  const get = (name: (typeof FIELDS)[number]) => flat[FIELDS.indexOf(name)];
  const state = str(get('state')) as JobState | null;
  if (state === null) return null;
  const ownerId = json<string | null>(get('owner'), null);
  const base = newJobRecord(str(get('id'))!, Number(get('seq')), str(get('queue'))!, json<CommandSpec>(get('spec'), {} as CommandSpec),
    Number(get('createdAt')), { ownerId, grant: null });
  return {
    ...base,
    state,
    startedAt: num(get('startedAt')),
    finishedAt: num(get('finishedAt')),
    pid: num(get('pid')),
    result: withTruncatedReason(json<JobResult | null>(get('result'), null)),
    error: json<JobError | null>(get('error'), null),
    outputBytes: { stdout: Number(get('obo')) || 0, stderr: Number(get('obe')) || 0 },
    unconfirmed: str(get('confirmBy')) !== null,
    notify: json<NotifyStatus | null>(get('notify'), null),
    attempt: Number(get('attempt')) || 0,
    attempts: decodeAttempts(get('attempts')),
    runAt: num(get('runAt')),
    node: str(get('accepted')),
  };
}

/** An attempt as the scripts keep it (lua/common.lua, START and closeAttempt): result and error as the JSON text the worker sent. */
interface StoredAttempt {
  attempt: number;
  node: string;
  host: string;
  startedAt: number;
  finishedAt?: number;
  state: JobState;
  result?: string;
  error?: string;
  output?: { stdout?: number; stderr?: number };
}

function decodeAttempts(v: Flat[number] | undefined): AttemptRecord[] {
  const raw = json<StoredAttempt[] | Record<string, never>>(v, []);
  if (!Array.isArray(raw)) return []; // cjson writes an empty array as {}
  return raw.map((a) => ({
    attempt: a.attempt,
    node: a.node,
    host: a.host,
    startedAt: a.startedAt,
    finishedAt: a.finishedAt ?? null,
    state: a.state,
    result: a.result ? withTruncatedReason(JSON.parse(a.result) as JobResult) : null,
    error: a.error ? (JSON.parse(a.error) as JobError) : null,
    output: { stdout: a.output?.stdout ?? 0, stderr: a.output?.stderr ?? 0 },
  }));
}

/** A record in the API's shape; null when there is no job to show (none, or not confirmed yet). */
export function viewOf(record: StoredRecord | null, position: number | false | null): Job | null {
  if (record === null || record.unconfirmed) return null;
  return toJobView(record, record.state === 'queued' && typeof position === 'number' ? position : null, record.outputBytes);
}
