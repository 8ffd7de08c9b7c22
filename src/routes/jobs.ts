import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';

// Filled in by the jobs work: /v1/jobs…, /v1/queues.
const jobRoutes: FastifyPluginAsyncZod = async () => {};
export default jobRoutes;
