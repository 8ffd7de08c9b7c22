import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import type { JobQueue, StreamName } from '../queue/index.js';
import { OutputRemovedError } from '../queue/log-subscription.js';
import { canSee } from '../security/auth.js';
import { followReadable, rangeReadable, READ_CHUNK } from './output-stream.js';

/** GET /v1/jobs/{id}/output: a job's bytes from an offset, or followed live (routes/jobs.ts registers it). */

export const notFound = (id: string) => new ApiError('NOT_FOUND', `no job ${JSON.stringify(id.slice(0, 64))}`);


/**
 * A job belongs to the token that submitted it: another token without admin gets the 404 of an unknown id
 * (never a 403, so job ids do not leak). Every route of one job calls this first.
 */
export async function mustSee(
  jobs: { ownerOf(id: string): Promise<string | null | undefined> },
  request: FastifyRequest,
  id: string,
): Promise<void> {
  const owner = await jobs.ownerOf(id);
  if (owner === undefined || !canSee(request.principal!, owner)) throw notFound(id);
}

export const OUTPUT_DESCRIPTION =
  'The raw bytes of one stream from byte `offset` (default 0) to what is kept now, as `application/octet-stream`. ' +
  'Header `X-Output-Offset` is the offset of the first byte of the body, so a client resumes at X-Output-Offset + bytes received; ' +
  'without `follow`, `X-Output-End` is the offset after the last byte and `X-Job-State` the state when the read began. ' +
  'With `follow=true` the response stays open and streams the bytes as the job writes them (`curl -N` tails it) until the job ' +
  'ends; then the HTTP trailers (declared in the `Trailer` header, chunked encoding) `X-Job-State`, `X-Exit-Code`, `X-Signal`, ' +
  '`X-Returncode` and `X-Output-End` carry its exit status (empty when it has none, e.g. canceled before it started). ' +
  'A follow on a queued job waits for it to start. Every byte from 0 to the end stays readable while the job is kept ' +
  '(the first EXECD_OUTPUT_MEMORY_BYTES in memory, the rest in a file); past maxOutputBytes nothing is kept and `result.truncated` says so. ' +
  'An `offset` past the end is a 400 VALIDATION_FAILED (with `end`), except with `follow=true` on a job that can still write, which waits for those bytes. ' +
  'With `follow=true&status=inline` the body ends with one more line, for clients that cannot read trailers (fetch, Python requests, urllib3): ' +
  '`{"execd":"status","state":"succeeded","exitCode":0,"signal":null,"returncode":0,"timedOut":false,"outputEnd":N}` and a newline, preceded by a ' +
  "newline when the output did not end with one. The output is exactly the body's first `outputEnd` − `offset` bytes; the status is its last line " +
  '(exit fields null when no process ran, e.g. canceled before it started). `status=inline` needs `follow=true` (else 400). ' +
  'A follow whose token a reload of EXECD_TOKENS_FILE (SIGHUP) removes, or leaves unable to see the job, is cut.';

/** What GET /v1/jobs/{id}/output asked for (its query, parsed). */
export interface OutputAsked {
  stream: StreamName;
  offset: number;
  follow: boolean;
  /** status=inline: the job's status as the body's last line. */
  inline: boolean;
}

/**
 * Answer one output request: a snapshot of the bytes, or (follow) a live body with the exit status in
 * trailers; `onFollow` is told once a follow is accepted (the route holds it open on shutdown, and cuts it
 * when a tokens reload takes its right away).
 */
export async function sendJobOutput(
  jobs: JobQueue,
  request: FastifyRequest,
  reply: FastifyReply,
  id: string,
  asked: OutputAsked,
  onFollow: () => void,
) {
    const { stream, offset, follow, inline } = asked;
    if (inline && !follow) {
      const message = 'status=inline goes with follow=true (without follow, the headers X-Job-State and X-Output-End say where the job stands)';
      throw new ApiError('VALIDATION_FAILED', message, { errors: [{ in: 'querystring', path: '/status', message }] });
    }
    await mustSee(jobs, request, id);
    const [output, job] = await Promise.all([jobs.output(id), jobs.get(id)]);
    if (!output || !job) throw notFound(id);
    const end = output.end(stream);
    if (offset > end && (!follow || output.closed(stream))) {
      const message = `offset ${offset} is past the end of ${stream} (${end} bytes${output.closed(stream) ? '' : ' so far'})`;
      throw new ApiError('VALIDATION_FAILED', message, { end, errors: [{ in: 'querystring', path: '/offset', message }] });
    }
    reply.type('application/octet-stream').header('x-content-type-options', 'nosniff').header('x-output-offset', String(offset));
    if (!follow) {
      reply.header('content-length', String(end - offset)).header('x-output-end', String(end)).header('x-job-state', job.state);
      // A snapshot: a DELETE of the job from now on cannot take the bytes this answer promises; one before is a 404.
      let snapshot: Awaited<ReturnType<typeof output.snapshot>>;
      try {
        snapshot = await output.snapshot(stream);
      } catch (err) {
        throw err instanceof OutputRemovedError ? notFound(id) : err;
      }
      if (end - offset > READ_CHUNK) return reply.send(rangeReadable(snapshot, offset, end) as never);
      try {
        return reply.send((await snapshot.read(offset, end - offset)) as never);
      } finally {
        await snapshot.close();
      }
    }
    reply.header('cache-control', 'no-store');
    onFollow();
    // The job as it was when its output ended (a shutdown may drop the record right after).
    let final: Promise<Awaited<ReturnType<typeof jobs.get>>> | undefined;
    const status = () => (final ??= jobs.get(id));
    const str = (v: number | string | null | undefined) => (v === null || v === undefined ? '' : String(v));
    reply
      .trailer('x-job-state', async () => str((await status())?.state))
      .trailer('x-exit-code', async () => str((await status())?.result?.exitCode))
      .trailer('x-signal', async () => str((await status())?.result?.signal))
      .trailer('x-returncode', async () => str((await status())?.result?.returncode))
      .trailer('x-output-end', async () => str(output.end(stream)));
    // In-band status (status=inline): the job's outcome as the body's last line.
    const statusLine = async () => {
      const job = await status();
      const r = job?.result;
      const line = { execd: 'status', state: job?.state ?? null, exitCode: r?.exitCode ?? null, signal: r?.signal ?? null,
        returncode: r?.returncode ?? null, timedOut: r?.timedOut ?? null, outputEnd: output.end(stream) };
      return `${JSON.stringify(line)}\n`;
    };
    const readable = followReadable(output, stream, offset, () => void status(), () => notFound(id), inline ? statusLine : undefined);
    return reply.send(readable as never);
}
