import { z } from 'zod';
import type { FastifyReply } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ApiError, InvalidInput } from '../errors.js';
import { UnknownQueue } from '../queue/index.js';
import { mustSee, notFound, OUTPUT_DESCRIPTION, sendJobOutput } from './job-output.js';
import { clientGone } from './sync-run.js';
import { admitNotify } from './notify.js';
import { problems, V1_ERRORS } from '../schemas/common.js';
import {
  DEFAULT_LIST_LIMIT,
  GetJobQuery,
  Job,
  JobIdParams,
  JobList,
  JobRequest,
  cursorOf,
  labelFilters,
  listCursor,
  ListJobsQuery,
  OutputQuery,
  QueueInfo,
  type RetryRequest,
  SignalRequest,
  SubmitHeaders,
} from '../schemas/jobs.js';
import { canSee, hasScope, ownerFilter, type Principal } from '../security/auth.js';

import { checkTtySupport, isSignalName } from '../runner/index.js';
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
const queueInBody = queueIn('body');
const queueInQuery = queueIn('querystring');

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
          'A queue holding EXECD_QUEUE_CAPACITY waiting jobs (queued and scheduled) answers 503 QUEUE_FULL with Retry-After. ' +
          '`retry` runs it again after a failed, timed_out (or, when listed, lost) attempt, after a backoff, as the same job (`attempts`); ' +
          '`notBefore`/`delayMs` keep it `scheduled` until then; `labels` tag it for `?label=` (docs/jobs.md). ' +
          'A job this server could never start is refused at once, never queued: `"tty"` where the spawner is child_process is 422 SPAWN_FAILED (errno ENOTSUP).',
        headers: SubmitHeaders,
        body: JobRequest,
        response: { 200: Job, 202: Job, ...problems(...V1_ERRORS, 409, 422) },
      },
    },
    async (request, reply) => {
      const { queue = defaultQueue } = request.body;
      const spec = withoutQueue(request.body);
      admitNotify(request.body.notify, config); // EXECD_NOTIFY_ALLOW: a 403 naming the setting, before anything is queued
      // The server's bounds and the command policy: a 400 or 403 now, not a failed job later. The grant goes with the job.
      const runSpec = toJobRunSpec(spec, config);
      const { grant } = await app.security.admit(request.principal!, runSpec, request.audit);
      checkTtySupport(app.services.runContext.spawner, runSpec);
      const key = request.headers['idempotency-key'];
      const ownerId = request.principal!.id;
      capAttempts(spec, Math.min(config.jobMaxAttempts, grant.maxAttempts ?? Infinity));
      const submitted: SubmitRequest = { queue, spec, ownerId, grant, runAt: runAtOf(request.body) };
      if (key !== undefined) submitted.idempotencyKey = key;
      const { job, created } = await jobs.submit(submitted).catch(queueInBody);
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
        summary: 'List jobs, oldest (or newest) first, a page at a time',
        description:
          "The token's own jobs (every job with `admin`). " +
          'Filters `state`, `queue` and `label=key=value` (repeatable, all must match); `limit` 1..1000 (default 100). Jobs come in the order they were accepted, ' +
          'oldest first, or newest first with `order=desc`; pass `nextCursor` as `cursor` ' +
          'for the next page: each job still kept appears exactly once across pages, even while jobs are added and removed (a newest-first walk ' +
          'does not go back for jobs accepted after its first page). A cursor continues in the order of its page; with the other `order` it is a 400. ' +
          '`nextCursor` is null when nothing more matches now.',
        querystring: ListJobsQuery,
        response: { 200: JobList, ...problems(...V1_ERRORS) },
      },
    },
    async (request) => {
      const { state, queue, limit, label } = request.query;
      const owner = ownerFilter(request.principal!);
      const labels = labelFilters(label);
      const { order, position } = listCursor(request.query.order, request.query.cursor);
      const page = await jobs
        .list({ state, queue, owner, limit: limit ?? DEFAULT_LIST_LIMIT, order, cursor: position, labels })
        .catch(queueInQuery);
      return { ...page, nextCursor: cursorOf(order, page.nextCursor) };
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
      const abort = clientGone(reply);
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
      const { query } = request;
      const asked = { stream: query.stream ?? 'stdout', offset: query.offset ?? 0, follow: query.follow === 'true', inline: query.status === 'inline' };
      return sendJobOutput(jobs, request, reply, id, asked, () => {
        hold(reply);
        follows.set(reply, id);
        reply.raw.once('close', () => follows.delete(reply));
      });
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
/**
 * A retry asking for more attempts than EXECD_JOB_MAX_ATTEMPTS or its policy rule's maxAttempts gets that many (the
 * Job's spec shows what holds).
 */
function capAttempts(spec: CommandSpec, max: number): void {
  const retry = (spec as { retry?: RetryRequest }).retry;
  if (retry && retry.attempts > max) (spec as { retry?: RetryRequest }).retry = { ...retry, attempts: max };
}

/** When a delayed job is queued (epoch ms); undefined: now. The schema checked the bounds and that only one is given. */
function runAtOf(body: JobRequest): number | undefined {
  if (body.delayMs !== undefined) return body.delayMs > 0 ? Date.now() + body.delayMs : undefined;
  if (body.notBefore !== undefined) return Date.parse(body.notBefore);
  return undefined;
}

function withoutQueue(body: JobRequest): CommandSpec {
  if (body.queue === undefined) return body;
  const spec: Record<string, unknown> = {};
  for (const key in body) if (key !== 'queue') spec[key] = body[key as keyof JobRequest];
  return spec as CommandSpec;
}


export default jobRoutes;
