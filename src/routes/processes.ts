import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';

// Filled in by the processes work: GET /v1/processes and /v1/processes/{pid}.
const processRoutes: FastifyPluginAsyncZod = async () => {};
export default processRoutes;
