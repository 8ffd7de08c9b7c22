import { z } from 'zod';
import { IsoTime } from './common.js';
import { intQuery, Job, JobError, JobState, LabelFilter, MAX_LABELS } from './jobs.js';
import { TruncatedReason } from './run.js';

/**
 * The WebSocket protocols of GET /v1/jobs/{id}/stream and GET /v1/events: the
 * query strings (validated before the upgrade) and every frame either side
 * sends. openapi.yaml carries the frames in each operation's `x-websocket`.
 */

const Offset = intQuery(0, Number.MAX_SAFE_INTEGER);
const StreamName = z.enum(['stdout', 'stderr']);

/** Bytes in the header of a binary output frame: the stream (1 byte), then the offset (8 bytes, big-endian). */
export const BINARY_HEADER_BYTES = 9;
/** The first byte of a binary output frame. */
export const BINARY_STREAM_IDS = { stdout: 1, stderr: 2 } as const;

/** openapi.yaml's description of the binary output frames (x-websocket binaryServerFrames of streamJob). */
export const BINARY_OUTPUT_FRAME = {
  description:
    'With encoding=binary, output comes as WebSocket binary frames (state, gap, error and exit stay JSON text frames). Per stream, output ' +
    'and gap frames are contiguous: offset + the number of data bytes is the offset of the stream\'s next frame.',
  layout: [
    { bytes: '0', name: 'stream', type: 'uint8', description: '1 = stdout, 2 = stderr' },
    { bytes: '1..8', name: 'offset', type: 'uint64, big-endian', description: 'Byte offset of the first data byte in its stream (as GET /v1/jobs/{id}/output)' },
    { bytes: '9..', name: 'data', type: 'bytes', description: 'The raw output bytes (at least one)' },
  ],
};

export const StreamEncoding = z.enum(['utf8', 'base64', 'binary']);
export type StreamEncoding = z.infer<typeof StreamEncoding>;

export const LagPolicy = z.enum(['wait', 'skip']);
export type LagPolicy = z.infer<typeof LagPolicy>;

export const StreamQuery = z.strictObject({
  offset: Offset.optional().meta({ description: 'Byte offset in each stream of the first byte wanted (default 0): the same offsets as /output.' }),
  stdoutOffset: Offset.optional().meta({ description: 'Overrides `offset` for stdout (resume both streams exactly).' }),
  stderrOffset: Offset.optional().meta({ description: 'Overrides `offset` for stderr.' }),
  encoding: StreamEncoding.optional().meta({
    description:
      '`utf8` (default): output frames are JSON text, `data` is text; `base64`: `data` is base64 and frames carry `"encoding":"base64"`; ' +
      '`binary`: output goes as WebSocket binary frames — byte 0 the stream (1 stdout, 2 stderr), bytes 1..8 the byte offset of the first ' +
      'data byte in its stream (unsigned 64-bit big-endian), then the raw bytes — while state, gap, error and exit stay JSON text frames. ' +
      'Stdin frames carry text with utf8, base64 with base64 and with binary.',
  }),
  lag: LagPolicy.optional().meta({
    description:
      '`wait` (default): a viewer that reads slower than the job writes gets every byte kept, in order, later (the job never waits for it); ' +
      '`skip`: in the live part, a viewer whose send buffer fills jumps to the live edge and gets a `gap` frame for the bytes skipped.',
  }),
});
export type StreamQuery = z.infer<typeof StreamQuery>;

export const EventsQuery = z.strictObject({
  label: z
    .union([LabelFilter, z.array(LabelFilter).max(MAX_LABELS)])
    .optional()
    .meta({ description: 'key=value: only events of jobs with this label; repeat it for several (all must match).' }),
});

// Server → client, /v1/jobs/{id}/stream

export const OutputFrame = z
  .object({
    type: z.literal('output'),
    stream: StreamName,
    offset: z.int().meta({ description: 'Byte offset of the first byte of `data` in its stream (as /output).' }),
    encoding: z.literal('base64').optional().meta({ description: 'Present when the connection asked encoding=base64.' }),
    data: z.string().meta({
      description:
        'The bytes [offset, next offset): base64, or UTF-8 text. Text frames never split a character: an incomplete sequence at the end of a ' +
        'chunk waits for the next frame, so for UTF-8 output offset + UTF-8 length of data = the next offset. Bytes that are not UTF-8 become ' +
        'U+FFFD in text frames; ask encoding=base64 for exact bytes of any output.',
    }),
  })
  .meta({
    description:
      'Output bytes (encoding utf8 or base64; with encoding=binary they come as binary frames instead: see the `encoding` query parameter). ' +
      'Per stream, output and gap frames are contiguous: each starts where the previous one ended.',
  });

export const StateFrame = z
  .object({
    type: z.literal('state'),
    state: JobState,
    pid: z.int().nullable(),
    startedAt: IsoTime.nullable(),
    finishedAt: IsoTime.nullable(),
    error: JobError.nullable().meta({ description: 'Why the job did not run as asked (SPAWN_FAILED…), else null.' }),
  })
  .meta({ description: 'The job state: first the state at connect (queued or running), then each change; a terminal state comes after the last output, just before `exit`.' });

export const GapFrame = z
  .object({
    type: z.literal('gap'),
    stream: StreamName,
    from: z.int(),
    to: z.int(),
  })
  .meta({
    description:
      'The bytes [from, to) of `stream` will not come on this connection: they are not held (past the job\'s maxOutputBytes, or a full disk: ' +
      'sent after the last output of the stream, before exit; removed by DELETE or retention: sent before the NOT_FOUND error frame), or the ' +
      'connection asked lag=skip and was too slow for them (those stay readable from /output). The next output frame of that stream, if any, starts at `to`.',
  });

export const ExitFrame = z
  .object({
    type: z.literal('exit'),
    state: JobState,
    exitCode: z.int().nullable(),
    signal: z.string().nullable(),
    returncode: z.int().nullable().meta({ description: 'Null when no process ran (canceled while queued, could not start).' }),
    timedOut: z.boolean(),
    truncated: z.object({ stdout: z.boolean(), stderr: z.boolean() }).meta({ description: "The job result's truncated (all false when no process ran)." }),
    truncatedReason: z
      .object({ stdout: TruncatedReason.nullable(), stderr: TruncatedReason.nullable() })
      .meta({ description: "The job result's truncatedReason: why a stream's output stops short (null when it does not, or no process ran)." }),
  })
  .meta({ description: 'The last frame, after all output: the close code 1000 follows.' });

export const ErrorFrame = z
  .object({
    type: z.literal('error'),
    code: z.string().meta({ description: 'VALIDATION_FAILED (bad frame), FORBIDDEN (needs jobs:write; or, before a 1008 close, the token lost jobs:read or admin), UNAUTHORIZED (the token was revoked, then close 1008), CONFLICT (job not running, stdin not a stream or closed), NOT_FOUND (job removed).' }),
    detail: z.string(),
  })
  .meta({ description: 'A client frame was refused, or the job went away; the connection stays open unless a close follows.' });

// Client → server, /v1/jobs/{id}/stream

export const StdinFrame = z
  .strictObject({
    type: z.literal('stdin'),
    data: z.string().optional().meta({ description: 'Bytes for the job\'s stdin: text with encoding=utf8, base64 with encoding=base64 or binary.' }),
    eof: z.literal(true).optional().meta({ description: 'Close the job\'s stdin (after `data`, when both are given).' }),
  })
  .refine((f) => f.data !== undefined || f.eof === true, { message: 'give "data", "eof": true, or both' })
  .meta({ description: 'Input for a job created with "stdin": {"stream": true} (needs the scope jobs:write).' });

export const SignalFrame = z
  .strictObject({
    type: z.literal('signal'),
    signal: z.string().min(1).max(32).meta({ description: 'A signal name such as "SIGINT".' }),
  })
  .meta({ description: "Signal the job's process group, as POST /v1/jobs/{id}/signal (needs the scope jobs:write)." });

export const ResizeFrame = z
  .strictObject({
    type: z.literal('resize'),
    cols: z.int().min(1).max(10_000).meta({ description: 'Columns.' }),
    rows: z.int().min(1).max(10_000).meta({ description: 'Rows.' }),
  })
  .meta({ description: 'Set the window size of a job created with "tty" (its process gets SIGWINCH); needs the scope jobs:write. docs/tty.md.' });

export const ClientFrame = z.discriminatedUnion('type', [StdinFrame, SignalFrame, ResizeFrame]);
export type ClientFrame = z.infer<typeof ClientFrame>;

// Server → client, /v1/events

export const JobEventFrame = z
  .object({
    type: z.enum(['queued', 'started', 'finished']),
    job: Job,
  })
  .meta({ description: 'A job was accepted (queued), its process started (started), or it reached a terminal state (finished: `job.state` and `job.result`).' });

export const LaggedFrame = z
  .object({
    type: z.literal('lagged'),
    dropped: z.int().meta({ description: 'Events not sent to this viewer because it read too slowly.' }),
  })
  .meta({ description: 'This viewer read too slowly and `dropped` events were skipped for it; GET /v1/jobs gives the current state.' });

export type OutputFrame = z.infer<typeof OutputFrame>;
export type StateFrame = z.infer<typeof StateFrame>;
export type GapFrame = z.infer<typeof GapFrame>;
export type ExitFrame = z.infer<typeof ExitFrame>;
export type ErrorFrame = z.infer<typeof ErrorFrame>;
export type JobEventFrame = z.infer<typeof JobEventFrame>;
export type LaggedFrame = z.infer<typeof LaggedFrame>;

/** JSON Schema of a frame for openapi.yaml: schemas with an id (Job, JobState…) are refs to the document's components. */
export function frameSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _, $defs: __, ...json } = z.toJSONSchema(schema, { io: 'output' }) as Record<string, unknown>;
  return JSON.parse(JSON.stringify(json).replaceAll('"#/$defs/', '"#/components/schemas/')) as Record<string, unknown>;
}
