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

export const JobRequest = z
  .strictObject({
    ...commandSpecShape,
    timeoutMs: JobTimeoutMs.optional(),
    queue: QueueName.optional().meta({ description: 'One of the queues of EXECD_QUEUES (default "default"); another name is a 400.' }),
    notify: NotifyRequest.optional(),
  })
  .superRefine(exactlyOneProgram)
  .meta({
    id: 'JobRequest',
    description: 'A CommandSpec plus the queue to run it on.',
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
    capacity: z.int().meta({ description: 'Most jobs waiting; beyond it POST /v1/jobs answers 503 QUEUE_FULL.' }),
    processed: z.int().meta({ description: 'Jobs its workers took and finished, whatever the outcome, since the server started.' }),
    failed: z.int().meta({ description: 'Of those, the ones that ended failed or timed_out.' }),
  })
  .meta({ id: 'QueueInfo' });
export type QueueInfo = z.infer<typeof QueueInfo>;

export const JobIdParams = z.object({ id: z.string().min(1).max(128) });

export const ListJobsQuery = z.strictObject({
  state: JobState.optional(),
  queue: QueueName.optional(),
  limit: intQuery(1, MAX_LIST_LIMIT).optional().meta({ description: `1..${MAX_LIST_LIMIT}, default ${DEFAULT_LIST_LIMIT}.` }),
  cursor: z.string().regex(/^[0-9]{1,16}$/, 'not a cursor from this server').optional().meta({ description: 'nextCursor of the previous page.' }),
});

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
