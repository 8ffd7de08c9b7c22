import { z } from 'zod';
import { JOB_STATES } from './constants.js';
import { IsoTime } from './common.js';
import { commandSpecShape, exactlyOneProgram, MAX_TIMEOUT_MS, RunStatus } from './run.js';
import { NotifyRequest, NotifyStatus } from './notify.js';

/** Longest long-poll of GET /v1/jobs/{id}?waitMs=. */
export const MAX_WAIT_MS = 60_000;
export const DEFAULT_LIST_LIMIT = 100;
export const MAX_LIST_LIMIT = 1000;
/** What `spec` shows instead of env values and stdin bytes. */
export const REDACTED = '[redacted]';

/**
 * A whole number in a query string, which arrives as text: digits only, no
 * sign, exponent, decimal point or surrounding space; anything else is a 400.
 */
export const intQuery = (min: number, max: number) =>
  z
    .string()
    .regex(/^(0|[1-9][0-9]{0,15})$/, 'must be a whole number written in digits')
    .transform(Number)
    .pipe(z.int().min(min).max(max));

export const JobState = z.enum(JOB_STATES).meta({ id: 'JobState' });

export const QueueName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'queue names are 1-64 of A-Z a-z 0-9 _ -');

/** A job's timeout: like a run's, and 0 for none (without it, EXECD_JOB_TIMEOUT_MS applies). */
const JobTimeoutMs = z
  .int()
  .min(0)
  .max(MAX_TIMEOUT_MS)
  .meta({
    description:
      'Milliseconds until the process group gets SIGTERM (then SIGKILL after killGraceMs). Without it the server default applies ' +
      '(EXECD_JOB_TIMEOUT_MS, an hour unless set); 0 asks for no timeout. A policy rule\'s maxTimeoutMs caps either.',
  });

/** Most attempts a job may ask for (EXECD_JOB_MAX_ATTEMPTS caps lower; docs/jobs.md). */
export const MAX_ATTEMPTS = 100;
/** Longest wait before one retry (an exponential backoff stops growing here). */
export const MAX_BACKOFF_MS = 3_600_000;
/** Longest delayed start: `delayMs`, or `notBefore` this far ahead at most. */
export const MAX_DELAY_MS = 7 * 24 * 3_600_000;
/** Labels: at most this many per job, keys of [a-z0-9._/-] (1-63, starting with a letter or digit), values up to 256 characters. */
export const MAX_LABELS = 16;
export const LABEL_KEY = /^[a-z0-9][a-z0-9._/-]{0,62}$/;
export const MAX_LABEL_VALUE = 256;
export const RETRY_ON = ['failed', 'timed_out', 'lost'] as const;
export const DEFAULT_RETRY_ON: readonly (typeof RETRY_ON)[number][] = ['failed', 'timed_out'];
export const DEFAULT_BACKOFF_MS = 1000;

export const RetryRequest = z
  .strictObject({
    attempts: z
      .int()
      .min(1)
      .max(MAX_ATTEMPTS)
      .meta({ description: 'Attempts in all, the first included (1 = no retry). EXECD_JOB_MAX_ATTEMPTS lowers a larger number to itself.' }),
    backoffMs: z
      .int()
      .min(0)
      .max(MAX_BACKOFF_MS)
      .optional()
      .meta({ description: `Wait before the first retry (default ${DEFAULT_BACKOFF_MS}). Exponential doubles it for each further retry, up to ${MAX_BACKOFF_MS}.` }),
    backoff: z.enum(['fixed', 'exponential']).optional().meta({ description: 'Default exponential: backoffMs × 2^(retry - 1).' }),
    on: z
      .array(z.enum(RETRY_ON))
      .min(1)
      .max(RETRY_ON.length)
      .optional()
      .meta({
        description:
          'The outcomes that are retried (default failed and timed_out). `lost` (the worker died: Redis) only when listed: execd is ' +
          'at-most-once unless asked; a lost attempt may have done part of its work. A canceled job is never retried.',
      }),
  })
  .meta({ id: 'RetryRequest', examples: [{ attempts: 3, backoffMs: 1000, backoff: 'exponential', on: ['failed', 'timed_out'] }] });
export type RetryRequest = z.infer<typeof RetryRequest>;

export const Labels = z
  .record(
    z.string().regex(LABEL_KEY, 'label keys are 1-63 of a-z 0-9 . _ / - starting with a letter or digit'),
    z
      .string()
      .max(MAX_LABEL_VALUE)
      .refine((v) => ![...v].some((c) => c < ' ' || c === '\x7f'), 'label values have no control characters'),
  )
  .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`)
  .meta({
    id: 'Labels',
    description: `Up to ${MAX_LABELS} key/value pairs to find the job by (GET /v1/jobs?label=k=v, /v1/events?label=k=v).`,
    examples: [{ team: 'web', build: '1234' }],
  });

/** The job-only options of a request, beside the CommandSpec (docs/jobs.md). */
const jobOptionsShape = {
  retry: RetryRequest.optional(),
  notBefore: IsoTime.optional().meta({
    description:
      'Start no earlier than this time (ISO 8601 with a zone): the job is `scheduled` until then, then queued at the back of its queue. ' +
      `A past time queues it at once; more than ${MAX_DELAY_MS / 3_600_000} h ahead is a 400. Not with delayMs.`,
  }),
  delayMs: z
    .int()
    .min(0)
    .max(MAX_DELAY_MS)
    .optional()
    .meta({ description: 'Start no earlier than this many ms after acceptance (`scheduled` until then). Not with notBefore.' }),
  labels: Labels.optional(),
};

/** notBefore and delayMs exclude each other; notBefore parses and is not too far ahead. */
function oneDelay(v: { notBefore?: string | undefined; delayMs?: number | undefined }, ctx: z.RefinementCtx): void {
  if (v.notBefore !== undefined && v.delayMs !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['delayMs'], message: 'give notBefore or delayMs, not both' });
  }
  if (v.notBefore !== undefined) {
    const at = Date.parse(v.notBefore);
    if (!/^\d{4}-\d{2}-\d{2}T/.test(v.notBefore) || Number.isNaN(at)) {
      ctx.addIssue({ code: 'custom', path: ['notBefore'], message: 'must be an ISO 8601 date-time such as 2030-01-01T12:00:00Z' });
    } else if (at - Date.now() > MAX_DELAY_MS) {
      ctx.addIssue({ code: 'custom', path: ['notBefore'], message: `must be at most ${MAX_DELAY_MS / 3_600_000} h ahead` });
    }
  }
}

export const JobRequest = z
  .strictObject({
    ...commandSpecShape,
    timeoutMs: JobTimeoutMs.optional(),
    queue: QueueName.optional().meta({ description: 'One of the queues of EXECD_QUEUES (default "default"); another name is a 400.' }),
    notify: NotifyRequest.optional(),
    ...jobOptionsShape,
  })
  .superRefine(exactlyOneProgram)
  .superRefine(oneDelay)
  .meta({
    id: 'JobRequest',
    description:
      'A CommandSpec plus the queue to run it on, and the job-only options: `retry` (attempts with backoff), `notBefore` or `delayMs` ' +
      '(a delayed start: `scheduled` until then), `labels` (to find it by), `notify` (a completion callback). docs/jobs.md.',
    examples: [{ command: 'for i in 1 2 3; do echo step $i; sleep 1; done', queue: 'default', timeoutMs: 60000 }],
  });
export type JobRequest = z.infer<typeof JobRequest>;

export const JobSpec = z
  .object({
    ...commandSpecShape,
    timeoutMs: JobTimeoutMs.optional(),
    env: z.record(z.string(), z.literal(REDACTED)).optional().meta({ description: 'The variable names; values are never echoed.' }),
    stdin: z
      .union([z.literal(REDACTED), z.object({ stream: z.literal(true) })])
      .optional()
      .meta({ description: `"${REDACTED}" when stdin bytes were given (never echoed); {"stream":true} for a streamed stdin.` }),
    notify: NotifyRequest.optional(),
    ...jobOptionsShape,
  })
  .meta({ id: 'JobSpec', description: 'The CommandSpec as submitted, without env values or stdin.' });

export const JobResult = z
  .object(RunStatus)
  .meta({ id: 'JobResult', description: 'The RunResult without stdout/stderr (read those from /output).' });

export const JobError = z
  .object({
    code: z.string().meta({ description: 'SPAWN_FAILED when the process could not start, RESOURCE_EXHAUSTED when the server had no descriptors, processes or memory to start it (nothing ran; submit again), SHUTTING_DOWN when the server stopped it.' }),
    message: z.string(),
    errno: z.string().optional(),
  })
  .meta({ id: 'JobError' });

export const JobAttempt = z
  .object({
    attempt: z.int().meta({ description: '1 for the first run, 2 for the first retry…' }),
    node: z.string().meta({ description: 'The node (EXECD_NODE_ID) that ran it.' }),
    host: z.string().meta({ description: "That node's hostname." }),
    startedAt: IsoTime,
    finishedAt: IsoTime.nullable(),
    state: JobState.meta({ description: 'running while it runs, then how it ended (a retried attempt keeps its failed, timed_out or lost).' }),
    result: JobResult.nullable(),
    error: JobError.nullable(),
    output: z
      .object({ stdout: z.int(), stderr: z.int() })
      .meta({
        description:
          "Byte offsets where this attempt's output begins: every attempt appends to the job's one output per stream, so attempt n is " +
          '[attempts[n-1].output, attempts[n].output) and the last runs to the end (docs/jobs.md).',
      }),
  })
  .meta({ id: 'JobAttempt' });

export const Job = z
  .object({
    id: z.string(),
    state: JobState,
    queue: z.string(),
    position: z.int().nullable().meta({ description: 'Jobs ahead of this one in its queue (0 = next to start); null unless queued.' }),
    createdAt: IsoTime,
    startedAt: IsoTime.nullable().meta({ description: 'When a worker took the job.' }),
    finishedAt: IsoTime.nullable(),
    spec: JobSpec,
    pid: z.int().nullable().meta({ description: 'The process (and process group) id once started.' }),
    result: JobResult.nullable().meta({ description: 'Set once terminal, when a process ran.' }),
    outputBytes: z
      .object({ stdout: z.int(), stderr: z.int() })
      .meta({ description: 'Bytes kept of each stream so far: the end offset for /output. result.truncated says whether more was dropped.' }),
    error: JobError.nullable(),
    attempt: z.int().meta({ description: 'Attempts started so far (0 before the first).' }),
    attempts: z.array(JobAttempt).meta({ description: 'Each attempt started, oldest first. result and error above are the last one\'s once terminal.' }),
    maxAttempts: z.int().meta({ description: 'Attempts it may have in all (retry.attempts as capped, else 1).' }),
    runAt: IsoTime.nullable().meta({ description: 'While scheduled (delayed start, or a retry waiting its backoff): when it is queued.' }),
    labels: z.record(z.string(), z.string()).meta({ description: 'The labels it was submitted with ({} for none).' }),
    node: z.string().nullable().meta({ description: 'The node (EXECD_NODE_ID, also on /v1/info) that accepted it.' }),
    notify: NotifyStatus.nullable().meta({ description: 'The completion callback and how its delivery went; null when the job asked for none.' }),
  })
  .meta({ id: 'Job' });
export type Job = z.infer<typeof Job>;
export type JobSpecView = z.infer<typeof JobSpec>;
export type JobResultView = z.infer<typeof JobResult>;

export const JobList = z
  .object({
    items: z.array(Job),
    nextCursor: z.string().nullable().meta({ description: 'Pass as `cursor` for the next page; null when there is none yet.' }),
  })
  .meta({ id: 'JobList' });
export type JobList = z.infer<typeof JobList>;

export const QueueInfo = z
  .object({
    name: z.string(),
    concurrency: z.int().meta({ description: 'Workers of this queue.' }),
    running: z.int(),
    queued: z.int(),
    scheduled: z.int().meta({ description: 'Jobs waiting for their start time or a retry\'s backoff; they count against capacity with the queued ones.' }),
    capacity: z.int().meta({ description: 'Most jobs waiting; beyond it POST /v1/jobs answers 503 QUEUE_FULL.' }),
    processed: z.int().meta({ description: 'Jobs its workers took and finished, whatever the outcome, since the server started.' }),
    failed: z.int().meta({ description: 'Of those, the ones that ended failed or timed_out.' }),
  })
  .meta({ id: 'QueueInfo' });
export type QueueInfo = z.infer<typeof QueueInfo>;

export const JobIdParams = z.object({ id: z.string().min(1).max(128) });

/** `key=value` of ?label=: a label key, "=", a value. */
export const LabelFilter = z
  .string()
  .max(64 + MAX_LABEL_VALUE)
  .refine((f) => {
    const i = f.indexOf('=');
    return i > 0 && LABEL_KEY.test(f.slice(0, i));
  }, 'label filters are key=value, with a label key of a-z 0-9 . _ / -');

/** ?label= as pairs (one or several). */
export function labelFilters(q: string | string[] | undefined): [string, string][] {
  if (q === undefined) return [];
  return (Array.isArray(q) ? q : [q]).map((f) => [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)]);
}

/**
 * A list cursor carries the order of its page: a newest-first (desc) page's starts with `d`, an oldest-first one's is
 * digits only (as before order existed). Without `order` a cursor continues in its own order; with the other one it is a 400.
 */
export function listCursor(order: 'asc' | 'desc' | undefined, cursor: string | undefined): { order: 'asc' | 'desc'; position?: string } {
  if (cursor === undefined) return { order: order ?? 'asc' };
  return cursor.startsWith('d') ? { order: 'desc', position: cursor.slice(1) } : { order: 'asc', position: cursor };
}
/** The nextCursor of a page in this order, from the backend's position. */
export const cursorOf = (order: 'asc' | 'desc', position: string | null): string | null =>
  position === null || order === 'asc' ? position : `d${position}`;

function cursorInOrder(q: { order?: 'asc' | 'desc' | undefined; cursor?: string | undefined }, ctx: z.RefinementCtx): void {
  if (q.order === undefined || q.cursor === undefined) return;
  const own = listCursor(undefined, q.cursor).order;
  if (own !== q.order) {
    ctx.addIssue({
      code: 'custom',
      path: ['cursor'],
      message: `this cursor continues an order=${own} list, not order=${q.order}: pass it with order=${own} (or without order), or start again without a cursor`,
    });
  }
}

export const ListJobsQuery = z
  .strictObject({
    state: JobState.optional(),
    queue: QueueName.optional(),
    limit: intQuery(1, MAX_LIST_LIMIT).optional().meta({ description: `1..${MAX_LIST_LIMIT}, default ${DEFAULT_LIST_LIMIT}.` }),
    order: z
      .enum(['asc', 'desc'])
      .optional()
      .meta({
        description:
          'asc (default): oldest first; desc: newest first (acceptance order). A cursor carries its order: with a cursor `order` may be left out, ' +
          'and the other order is a 400.',
      }),
    cursor: z
      .string()
      .regex(/^d?[0-9]{1,16}$/, 'not a cursor from this server')
      .optional()
      .meta({ description: 'nextCursor of the previous page; it continues in that page\'s order.' }),
    label: z
      .union([LabelFilter, z.array(LabelFilter).max(MAX_LABELS)])
      .optional()
      .meta({ description: 'key=value: only jobs with this label; repeat it for several (all must match).' }),
  })
  .superRefine(cursorInOrder);

export const GetJobQuery = z.strictObject({
  waitMs: intQuery(0, MAX_WAIT_MS)
    .optional()
    .meta({ description: `Hold the request until the job is terminal or this many ms (at most ${MAX_WAIT_MS}) pass.` }),
});

export const OutputQuery = z.strictObject({
  stream: z.enum(['stdout', 'stderr']).optional().meta({ description: 'Default stdout.' }),
  offset: intQuery(0, Number.MAX_SAFE_INTEGER).optional().meta({ description: 'Byte offset of the first byte wanted (default 0).' }),
  follow: z.enum(['true', 'false']).optional().meta({ description: 'Keep the response open and stream until the job ends.' }),
  status: z
    .enum(['trailers', 'inline'])
    .optional()
    .meta({
      description:
        'With follow=true, where the exit status goes: `trailers` (default) in HTTP trailers; `inline` also as a last line of the body, ' +
        'for clients that cannot read trailers (fetch, Python requests): `{"execd":"status","state":…,"exitCode":…,"signal":…,"returncode":…,"timedOut":…,"outputEnd":N}`.',
    }),
});

export const SignalRequest = z
  .strictObject({ signal: z.string().min(1).max(32).meta({ description: 'A signal name such as "SIGINT" or "SIGUSR1".' }) })
  .meta({ id: 'SignalRequest', examples: [{ signal: 'SIGINT' }] });

export const SubmitHeaders = z.looseObject({
  'idempotency-key': z
    .string()
    .regex(/^[\x21-\x7e]{1,255}$/, 'Idempotency-Key must be 1-255 visible ASCII characters')
    .optional()
    .meta({ description: 'The same key with the same body answers the same job (200); with another body, 409 CONFLICT.' }),
});
