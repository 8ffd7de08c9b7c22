import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Config } from './config.js';
import { problem } from './errors.js';
import { registerErrorHandling, sendProblem } from './plugins/errors.js';
import { registerDocs } from './plugins/docs.js';
import { Notifier } from './notify/index.js';
import notifyRoutes from './routes/notify.js';
import { registerUi } from './plugins/ui.js';
import { acceptEmptyBodies } from './plugins/empty-body.js';
import { registerAuth } from './plugins/auth.js';
import { RequestLogController } from './plugins/request-log.js';
import { lazyChildLogger } from './log.js';
import { createServices, loadQueueBackend, type Services } from './services/index.js';
import { Security } from './security/security.js';
import type { Spawner } from './runner/index.js';
import infoRoutes from './routes/info.js';
import processRoutes from './routes/processes.js';
import runRoutes from './routes/run.js';
import subprocessRoutes from './routes/subprocess.js';
import opsRoutes from './routes/ops.js';
import jobRoutes from './routes/jobs.js';
import policyRoutes from './routes/policy.js';
import streamRoutes from './routes/stream.js';
import eventRoutes from './routes/events.js';
import { registerWebSockets, ViewerHub } from './stream/hub.js';
import { streamMetrics } from './stream/metrics.js';
import metricsRoutes from './routes/metrics.js';
import { registerShutdown } from './plugins/shutdown.js';
import { registerLoadShedding } from './plugins/pressure.js';
import { Metrics } from './ops/metrics.js';
import { SpawnError } from './runner/errors.js';

export interface BuildOptions {
  logger?: FastifyServerOptions['logger'];
  spawner?: Spawner;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

/** Paths and keys that never reach a log line: tokens, env values, stdin (Python's `input`). */
export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers["sec-websocket-protocol"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["sec-websocket-protocol"]',
  'env',
  'stdin',
  'input',
  'token',
  'tokens',
  'sha256',
  'authorization',
  '*.env',
  '*.stdin',
  '*.input',
  '*.token',
  '*.tokens',
  '*.sha256',
  '*.authorization',
  '*.*.env',
  '*.*.stdin',
  '*.*.input',
];

export type App = FastifyInstance & { withTypeProvider<_T>(): FastifyInstance };

/** How often Node looks for requests past headersTimeout/requestTimeout (its default, 30 s, would let slow clients linger). */
function checkingInterval(config: Config): number {
  const shortest = Math.min(config.headersTimeoutMs, config.requestTimeoutMs || Infinity);
  return Math.max(50, Math.min(30_000, Math.floor(shortest / 4)));
}

/** An incoming X-Request-Id is kept (and echoed) when it is a sane token; anything else gets a fresh UUID. */
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/** JSON answers (application/json, application/problem+json) end with a newline, so that curl's output does not run into the prompt. */
const isJson = (reply: FastifyReply): boolean => {
  const type = reply.getHeader('content-type');
  return typeof type === 'string' && (type.startsWith('application/json') || type.startsWith('application/problem+json'));
};
const endsWithoutNewline = (payload: string): boolean => payload.length > 0 && payload.charCodeAt(payload.length - 1) !== 10;

/** Fastify's compiler factories, answering with zod's (its types name Ajv's compiler; Fastify takes any). */
const ZOD_COMPILERS = { buildValidator: () => validatorCompiler, buildSerializer: () => serializerCompiler } as unknown as NonNullable<
  NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']
>;

/** Build the execd app without listening: main.ts listens, tests inject or listen on port 0. */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    logController: new RequestLogController(), // one line per request (plugins/request-log.ts)
    childLoggerFactory: lazyChildLogger, // request.log's pino child only when a line goes through it (log.ts)
    bodyLimit: config.bodyLimit,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : crypto.randomUUID();
    },
    // The zod compilers from the start (set again below, for the types): Fastify then never loads its own defaults,
    // Ajv and fast-json-stringify, which no route uses (~0.6 MiB of code at rest).
    schemaController: { compilersFactory: ZOD_COMPILERS },
    // During a shutdown our own gate answers (problem+json SHUTTING_DOWN), not Fastify's plain 503.
    return503OnClosing: false,
    // maxParamLength above the longest id a schema accepts (job ids: 128), so the schema answers, not the router.
    routerOptions: { ignoreTrailingSlash: false, maxParamLength: 256 },
    // Errors the router raises before any route (a malformed %-escape, an over-long path segment) are problems too.
    frameworkErrors: (err, _request, reply) => {
      const detail = err.code === 'FST_ERR_BAD_URL' ? 'the URL is malformed' : 'a path segment is too long';
      void sendProblem(reply, problem('VALIDATION_FAILED', detail));
    },
    // Slow clients: headers and the whole request must arrive in time (checked every quarter of the shorter
    // timeout); the answer itself may take as long as the run. A silent connection is closed after the idle timeout.
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: config.idleTimeoutMs,
    http: {
      headersTimeout: config.headersTimeoutMs,
      requestTimeout: config.requestTimeoutMs,
      connectionsCheckingInterval: checkingInterval(config),
    },
  }).withTypeProvider<ZodTypeProvider>();
  app.server.maxConnections = config.maxConnections;

  // JSON only: a text/plain body is 415, not a string that fails validation.
  app.removeContentTypeParser(['text/plain']);
  acceptEmptyBodies(app); // a route without a body takes an empty one, whatever its Content-Type
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  // Security first: its files are read now, so a bad one stops the start before any helper or directory exists.
  const security = new Security(config, app.log);
  app.decorate('security', security);
  await loadQueueBackend(config); // BullMQ and ioredis only for EXECD_QUEUE_BACKEND=redis
  const services = createServices(config, { spawner: options.spawner, log: app.log });
  app.decorate('services', services);
  // Callback hooks on the hot path, here and in plugins/: an async hook costs a promise per request.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    done(null, typeof payload === 'string' && endsWithoutNewline(payload) && isJson(reply) ? `${payload}\n` : payload);
  });

  registerErrorHandling(app);
  // Operations (docs/operations.md): the drain gate and load shedding answer before any route or auth.
  registerShutdown(app, services);
  registerLoadShedding(app, config.maxEventLoopDelayMs, () => app.metrics.shed());
  await registerDocs(app, config.ui && config.role !== 'worker' ? '/ui/' : null);
  // The dashboard (docs/ui.md): static files under /ui/ that call /v1 like any client; not on a worker node.
  if (config.ui && config.role !== 'worker') await registerUi(app);
  // WebSocket viewers (docs/websocket.md): closed first on shutdown, with 1001.
  const viewers = new ViewerHub(services.jobs, config, app.log, security.audit);
  app.decorate('viewers', viewers);
  security.onTokensReloaded(() => viewers.revalidate((principal) => security.tokens.current(principal)));
  await registerWebSockets(app, viewers);
  const metrics = new Metrics({
    jobs: services.jobs,
    tracker: services.tracker,
    viewers: () => ({ job: viewers.jobViewerCount, events: viewers.eventViewerCount }),
    viewerCounters: streamMetrics,
    draining: () => app.shutdown.draining,
  });
  app.decorate('metrics', metrics);
  // Completion callbacks (docs/notify.md): the node that hears a job end first delivers them. Closed before the
  // queue (routes/jobs.ts' preClose), so the last outcomes are still written to the jobs.
  const notifier = new Notifier(config, { jobs: services.jobs, log: app.log.child({ component: 'notify' }), onOutcome: (o) => metrics.notifyDelivery(o) });
  app.addHook('preClose', () => notifier.close());
  /*
   * The close order, in one place. ops/shutdown.ts drains first (no new work, queued jobs canceled, what
   * runs past the grace terminated), then calls app.close(), which runs
   *   preClose: new requests refused (plugins/shutdown.ts), WebSocket viewers closed with 1001 (stream/hub.ts),
   *             the queue closed and its long-polls answered (routes/jobs.ts);
   *   onClose:  this hook: the jobs (queued canceled, running terminated), any sync run left, this instance's
   *             output files (services.close), then the metrics' listeners.
   */
  app.addHook('onClose', async () => {
    try {
      await services.close();
    } finally {
      metrics.close();
    }
  });
  app.addHook('onError', async (_request, _reply, err) => {
    if (err instanceof SpawnError) metrics.spawnFailed('sync', err.errno);
  });

  await app.register(opsRoutes);
  await app.register(async (ops) => {
    registerAuth(ops); // /metrics takes a token like /v1
    await ops.register(metricsRoutes);
  });
  // A worker node (EXECD_ROLE=worker) runs jobs and answers only the operations routes.
  if (config.role !== 'worker') await app.register(
    async (v1) => {
      registerAuth(v1);
      await v1.register(infoRoutes);
      await v1.register(processRoutes);
      await v1.register(runRoutes);
      await v1.register(subprocessRoutes);
      await v1.register(jobRoutes);
      await v1.register(policyRoutes);
      await v1.register(notifyRoutes);
      await v1.register(streamRoutes);
      await v1.register(eventRoutes);
    },
    { prefix: '/v1' },
  );
  return app;
}
