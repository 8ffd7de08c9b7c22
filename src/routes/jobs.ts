import { z } from 'zod';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ApiError, InvalidInput } from '../errors.js';
import { UnknownQueue } from '../queue/index.js';
import { followReadable, rangeReadable, READ_CHUNK } from './output-stream.js';
import { OutputRemovedError } from '../queue/log-subscription.js';
import { problems, V1_ERRORS } from '../schemas/common.js';
import {
  DEFAULT_LIST_LIMIT,
  GetJobQuery,
  Job,
  JobIdParams,
  JobList,
  JobRequest,
  ListJobsQuery,
  OutputQuery,
  QueueInfo,
  SignalRequest,
  SubmitHeaders,
} from '../schemas/jobs.js';
import { canSee, hasScope, ownerFilter, type Principal } from '../security/auth.js';
import { isSignalName } from '../runner/index.js';
import { toJobRunSpec } from '../spec/run-spec.js';
import type { CommandSpec } from '../schemas/run.js';
import type { SubmitRequest } from '../queue/types.js';

const TAGS = ['jobs'];

/**
 * Job bodies are built by src/queue/view.ts in exactly the schema's shape
 * (test/e2e/jobs-contract.test.ts checks them against it strictly), so the hot job
 * routes serialize with JSON.stringify instead of re-validating each answer
 * through zod: a quarter of the CPU of a POST /v1/jobs, and most of a page of
 * GET /v1/jobs. The schemas still document the answers.
 */
const plainJson = { serializerCompiler: () => (data: unknown) => JSON.stringify(data) };
/** An unknown queue is a field of the request: the 400 names where it was. */
const queueIn =
  (where: 'body' | 'querystring') =>
  (err: unknown): never => {
    if (err instanceof UnknownQueue) throw new InvalidInput(err.message, [{ in: where, path: '/queue', message: err.message }]);
    throw err;
  };

const notFound = (id: string) => new ApiError('NOT_FOUND', `no job ${JSON.stringify(id.slice(0, 64))}`);

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

const OUTPUT_DESCRIPTION =
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

const jobRoutes: FastifyPluginAsyncZod = async (app) => {
  const { jobs, config } = app.services;
  const defaultQueue = config.queues.some((q) => q.name === 'default') ? 'default' : config.queues[0]!.name;

  // Stop the jobs before the server waits for its open requests: follows and long-polls then end on their
  // own, and get a moment to finish so that their connections are idle when the server closes.
  const holding = new Set<Promise<unknown>>();
  const hold = (reply: FastifyReply) => {
    const done = new Promise((resolve) => reply.raw.once('close', resolve));
    holding.add(done);
    void done.then(() => holding.delete(done));
  };
  // A tokens reload (SIGHUP) reaches open follows as it reaches WebSockets: one whose token was removed, or can
  // no longer see the job (jobs:read, or admin for another token's job, taken away), is cut.
  const follows = new Map<FastifyReply, string>();
  const mayStillFollow = async (principal: Principal, id: string): Promise<boolean> => {
    const now = app.security.tokens.current(principal);
    if (now === null || !hasScope(now, 'jobs:read')) return false;
    if (now.scopes.has('admin')) return true;
    const owner = await jobs.ownerOf(id).catch(() => undefined);
    return owner === undefined || canSee(now, owner); // a job gone (or the backend away): the follow ends by itself
  };
  app.security.onTokensReloaded(() => {
    for (const [reply, id] of follows) {
      void mayStillFollow(reply.request.principal!, id).then((allowed) => {
        if (allowed || reply.raw.destroyed) return;
        app.security.audit.info({ event: 'token.revoked', via: 'follow', tokenId: reply.request.principal!.id, jobId: id }, 'token.revoked');
        reply.raw.destroy();
      });
    }
  });
  app.addHook('preClose', async () => {
    await jobs.close();
    await Promise.race([Promise.all(holding), new Promise((resolve) => setTimeout(resolve, 2000).unref())]);
  });

  app.post(
    '/jobs',
    {
      ...plainJson,
      config: { scope: 'jobs:write' },
      schema: {
        operationId: 'submitJob',
        tags: TAGS,
        summary: 'Queue a command as a job',
        description:
          `202 with the Job and \`Location: /v1/jobs/{id}\`. \`queue\` defaults to "default" (or the first queue of EXECD_QUEUES when none is named so); ` +
          'an unknown queue is a 400. The command policy applies as for POST /v1/run: a refused command is 403 COMMAND_NOT_ALLOWED and is never queued; ' +
          'the run-as user, cwd, ceilings and limits it grants hold when the job starts. The job belongs to the submitting token: another token ' +
          'without `admin` gets 404 for it. `Idempotency-Key` (per token): the same key with the same body answers the same job with 200; with another body, 409 CONFLICT. ' +
          'A queue holding EXECD_QUEUE_CAPACITY waiting jobs answers 503 QUEUE_FULL with Retry-After.',
        headers: SubmitHeaders,
        body: JobRequest,
        response: { 200: Job, 202: Job, ...problems(...V1_ERRORS, 409) },
      },
    },
    async (request, reply) => {
      const { queue = defaultQueue } = request.body;
      const spec = withoutQueue(request.body);
      // The server's bounds and the command policy: a 400 or 403 now, not a failed job later. The grant goes with the job.
      const runSpec = toJobRunSpec(spec, config);
      const { grant } = await app.security.admit(request.principal!, runSpec, request.audit);
      const key = request.headers['idempotency-key'];
      const ownerId = request.principal!.id;
      const submitted: SubmitRequest = { queue, spec, ownerId, grant };
      if (key !== undefined) submitted.idempotencyKey = key;
      const { job, created } = await jobs.submit(submitted).catch(queueIn('body'));
      request.audit.jobId = job.id;
      request.log.debug({ jobId: job.id, queue, created }, created ? 'job queued' : 'job replayed for its idempotency key');
      return reply.code(created ? 202 : 200).header('location', `/v1/jobs/${job.id}`).send(job);
    },
  );

  app.get(
    '/jobs',
    {
      ...plainJson,
      config: { scope: 'jobs:read' },
      schema: {
        operationId: 'listJobs',
        tags: TAGS,
        summary: 'List jobs, oldest first, a page at a time',
        description:
          "The token's own jobs (every job with `admin`). " +
          'Filters `state` and `queue`; `limit` 1..1000 (default 100). Jobs come in the order they were accepted; pass `nextCursor` as `cursor` ' +
          'for the next page: each job still kept appears exactly once across pages, even while jobs are added and removed. ' +
          '`nextCursor` is null when nothing more matches now.',
        querystring: ListJobsQuery,
        response: { 200: JobList, ...problems(...V1_ERRORS) },
      },
    },
    async (request) => {
      const { state, queue, limit, cursor } = request.query;
      const owner = ownerFilter(request.principal!);
      return jobs.list({ state, queue, owner, limit: limit ?? DEFAULT_LIST_LIMIT, cursor }).catch(queueIn('querystring'));
    },
  );

  app.get(
    '/jobs/:id',
    {
      ...plainJson,
      config: { scope: 'jobs:read' },
      schema: {
        operationId: 'getJob',
        tags: TAGS,
        summary: 'A job; with waitMs, once it is terminal or waitMs pass',
        params: JobIdParams,
        querystring: GetJobQuery,
        response: { 200: Job, ...problems(...V1_ERRORS, 404) },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      await mustSee(jobs, request, id);
      const abort = abortOnClose(reply);
      if (request.query.waitMs) hold(reply);
      const job = await jobs.waitForTerminal(id, request.query.waitMs ?? 0, abort.signal);
      abort.dispose();
      if (!job) throw notFound(id);
      return job;
    },
  );

  app.post(
    '/jobs/:id/cancel',
    {
      ...plainJson,
      config: { scope: 'jobs:write' },
      schema: {
        operationId: 'cancelJob',
        tags: TAGS,
        summary: 'Cancel a job',
        description:
          'Queued: `canceled` at once. Running: the process group gets SIGTERM, SIGKILL after the grace, and the answer comes once the job is ' +
          '`canceled` (or has ended on its own meanwhile). A finished job is answered as it is.',
        params: JobIdParams,
        response: { 200: Job, ...problems(...V1_ERRORS, 404) },
      },
    },
    async (request) => {
      await mustSee(jobs, request, request.params.id);
      return jobs.cancel(request.params.id);
    },
  );

  app.post(
    '/jobs/:id/signal',
    {
      ...plainJson,
      config: { scope: 'jobs:write' },
      schema: {
        operationId: 'signalJob',
        tags: TAGS,
        summary: "Send a signal to a running job's process group",
        description: 'A signal name of this OS (`SIGINT`, `SIGUSR1`…; else 400). 202 with the Job once the signal is sent; a job that is `running` but whose ' +
          'process is still being started (pid null) gets it the moment the process exists. 409 when the job is not running (queued, or ended).',
        params: JobIdParams,
        body: SignalRequest,
        response: { 202: Job, ...problems(...V1_ERRORS, 404, 409) },
      },
    },
    async (request, reply) => {
      const { signal } = request.body;
      await mustSee(jobs, request, request.params.id);
      if (!isSignalName(signal)) {
        const message = `unknown signal ${JSON.stringify(signal)}: give a name such as "SIGTERM"`;
        throw new ApiError('VALIDATION_FAILED', message, { errors: [{ in: 'body', path: '/signal', message }] });
      }
      return reply.code(202).send(await jobs.signal(request.params.id, signal));
    },
  );

  app.delete(
    '/jobs/:id',
    {
      config: { scope: 'jobs:write' },
      schema: {
        operationId: 'deleteJob',
        tags: TAGS,
        summary: 'Forget a finished job and its output',
        description: '204 for a terminal job; 409 while it is queued or running (cancel it first).',
        params: JobIdParams,
        response: { 204: z.null().meta({ description: 'Deleted' }), ...problems(...V1_ERRORS, 404, 409) },
      },
    },
    async (request, reply) => {
      await mustSee(jobs, request, request.params.id);
      await jobs.remove(request.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/jobs/:id/output',
    {
      config: { scope: 'jobs:read' },
      schema: {
        operationId: 'getJobOutput',
        tags: TAGS,
        summary: "A job's stdout or stderr from a byte offset; with follow=true, live until it ends",
        description: OUTPUT_DESCRIPTION,
        params: JobIdParams,
        querystring: OutputQuery,
        response: {
          200: {
            description: 'The bytes from `offset`.',
            content: { 'application/octet-stream': { schema: z.string().meta({ format: 'binary' }) } },
          },
          ...problems(...V1_ERRORS, 404),
        },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const stream = request.query.stream ?? 'stdout';
      const offset = request.query.offset ?? 0;
      const follow = request.query.follow === 'true';
      const inline = request.query.status === 'inline';
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
      hold(reply);
      follows.set(reply, id);
      reply.raw.once('close', () => follows.delete(reply));
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
    },
  );

  app.get(
    '/queues',
    {
      ...plainJson,
      config: { scope: 'jobs:read' },
      schema: {
        operationId: 'listQueues',
        tags: TAGS,
        summary: 'The queues of EXECD_QUEUES with their workers and counts',
        response: { 200: z.array(QueueInfo), ...problems(...V1_ERRORS) },
      },
    },
    async () => jobs.queues(),
  );
};

/** The CommandSpec part of a job request (a copy only when it names its queue: object rest is slow on a hot path). */
function withoutQueue(body: JobRequest): CommandSpec {
  if (body.queue === undefined) return body;
  const spec: Record<string, unknown> = {};
  for (const key in body) if (key !== 'queue') spec[key] = body[key as keyof JobRequest];
  return spec as CommandSpec;
}

/** An AbortSignal that fires when the client goes away before the answer. */
function abortOnClose(reply: FastifyReply): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) controller.abort();
  };
  reply.raw.once('close', onClose);
  return { signal: controller.signal, dispose: () => reply.raw.removeListener('close', onClose) };
}

export default jobRoutes;
