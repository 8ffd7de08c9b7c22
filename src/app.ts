import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Config } from './config.js';
import { registerErrorHandling } from './plugins/errors.js';
import { registerDocs } from './plugins/docs.js';
import { registerAuth } from './plugins/auth.js';
import { createServices, type Services } from './services/index.js';
import type { Spawner } from './services/runner/index.js';
import infoRoutes from './routes/info.js';
import processRoutes from './routes/processes.js';
import runRoutes from './routes/run.js';
import subprocessRoutes from './routes/subprocess.js';
import opsRoutes from './routes/ops.js';
import jobRoutes from './routes/jobs.js';

export interface BuildOptions {
  logger?: FastifyServerOptions['logger'];
  spawner?: Spawner;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

/** Paths and keys that never reach a log line. */
export const LOG_REDACT = [
  'req.headers.authorization',
  'req.headers["sec-websocket-protocol"]',
  'headers.authorization',
  '*.env',
  '*.stdin',
  '*.token',
  '*.tokens',
];

export type App = FastifyInstance & { withTypeProvider<T>(): FastifyInstance };

/** Build the execd app without listening: main.ts listens, tests inject or listen on port 0. */
export async function buildApp(config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: config.bodyLimit,
    requestIdHeader: 'x-request-id',
    genReqId: () => crypto.randomUUID(),
    routerOptions: { ignoreTrailingSlash: false },
  }).withTypeProvider<ZodTypeProvider>();

  // JSON only: a text/plain body is 415, not a string that fails validation.
  app.removeContentTypeParser(['text/plain']);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);

  const services = createServices(config, { spawner: options.spawner, log: app.log });
  app.decorate('services', services);
  app.addHook('onClose', async () => services.close());
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });

  registerErrorHandling(app);
  await registerDocs(app);

  await app.register(opsRoutes);
  await app.register(
    async (v1) => {
      registerAuth(v1);
      await v1.register(infoRoutes);
      await v1.register(processRoutes);
      await v1.register(runRoutes);
      await v1.register(subprocessRoutes);
      await v1.register(jobRoutes);
    },
    { prefix: '/v1' },
  );
  return app;
}
