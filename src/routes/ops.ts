import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { problems } from '../schemas/common.js';

const Health = z.object({ status: z.enum(['ok', 'draining', 'unavailable']) }).meta({ id: 'Health' });

const opsRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/healthz',
    { schema: { operationId: 'healthz', tags: ['operations'], summary: 'Alive', security: [], response: { 200: Health } } },
    async () => ({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'readyz',
        tags: ['operations'],
        summary: 'Ready to take work: 503 while draining or when the queue backend is unreachable',
        security: [],
        response: { 200: Health, ...problems(503) },
      },
    },
    async () => ({ status: 'ok' as const }),
  );
};

export default opsRoutes;
