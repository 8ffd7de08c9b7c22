import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';

// Filled in by the subprocess work: /v1/subprocess/{getoutput,getstatusoutput,check_output,call,run}.
const subprocessRoutes: FastifyPluginAsyncZod = async () => {};
export default subprocessRoutes;
