import { z } from 'zod';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { ApiError } from '../errors.js';
import { problems } from '../schemas/common.js';

/** Longest wait for the queue backend to answer a readiness probe. */
const BACKEND_PROBE_MS = 1000;

/** True when the queue backend answers in time (memory: at once; a remote one must be reachable). */
async function backendReachable(jobs: { queues(): Promise<unknown> }): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), BACKEND_PROBE_MS)));
  try {
    return await Promise.race([jobs.queues().then(() => true, () => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

const Health = z.object({ status: z.enum(['ok', 'draining', 'unavailable']) }).meta({ id: 'Health' });

const opsRoutes: FastifyPluginAsyncZod = async (app) => {
  app.get(
    '/healthz',
    {
      // Alive is alive: answered while draining and when load is shed.
      config: { duringDrain: true, neverShed: true },
      schema: { operationId: 'healthz', tags: ['operations'], summary: 'Alive', security: [], response: { 200: Health } },
    },
    async () => ({ status: 'ok' as const }),
  );
  app.get(
    '/readyz',
    {
      config: { duringDrain: true },
      schema: {
        operationId: 'readyz',
        tags: ['operations'],
        summary: 'Ready to take work: 503 while draining or when the queue backend is unreachable',
        description:
          '503 SHUTTING_DOWN (`health: draining`) from the moment a shutdown starts; 503 BACKEND_UNAVAILABLE (`health: unavailable`) when the queue ' +
          'backend does not answer within a second, 503 QUEUE_FULL (load shedding) when the event loop lags past EXECD_MAX_EVENT_LOOP_DELAY_MS.',
        security: [],
        response: { 200: Health, ...problems(503) },
      },
    },
    async () => {
      if (app.shutdown.draining) throw new ApiError('SHUTTING_DOWN', 'the server is draining: it takes no new work', { health: 'draining' });
      if (!(await backendReachable(app.services.jobs))) {
        throw new ApiError('BACKEND_UNAVAILABLE', `the queue backend (${app.services.jobs.backend}) is unreachable`, { health: 'unavailable' });
      }
      return { status: 'ok' as const };
    },
  );
};

export default opsRoutes;
