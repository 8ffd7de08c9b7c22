import type { FastifyInstance } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { z } from 'zod';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import { transformOpenApi } from '../openapi-transform.js';
import { OPENAPI_INFO } from '../openapi-info.js';

/**
 * The /docs page's policy: @fastify/swagger-ui's static one, less `upgrade-insecure-requests`, which would
 * turn "Try it out" into https:// requests to an execd that speaks plain HTTP. Requests stay same-origin
 * (`default-src 'self'`): the document's server URL is relative.
 */
const withoutUpgrade = (csp: string): string => csp.replace(/\s*upgrade-insecure-requests;?/, '').trim();

const Home = z
  .object({
    name: z.literal('execd'),
    version: z.string(),
    docs: z.string().meta({ description: 'The API, browsable (Swagger UI).' }),
    openapi: z.string().meta({ description: 'The API document.' }),
    health: z.string(),
    ui: z.string().nullable().meta({ description: 'The dashboard (null when EXECD_UI=false).' }),
  })
  .meta({ id: 'Home' });

/**
 * OpenAPI 3.1 from the zod schemas, served at /openapi.json, with a UI at /docs; `GET /` points a browser to the
 * dashboard (`ui`: its path, or null when it is off), else to /docs.
 */
export async function registerDocs(app: FastifyInstance, ui: string | null): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: OPENAPI_INFO,
    transform: jsonSchemaTransform,
    transformObject: transformOpenApi,
    hideUntagged: true,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true, transformStaticCSP: withoutUpgrade });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  const home = { name: 'execd' as const, version: OPENAPI_INFO.info.version, docs: '/docs', openapi: '/openapi.json', health: '/healthz', ui };
  app.get(
    '/',
    {
      schema: {
        operationId: 'home',
        tags: ['operations'],
        summary: 'Where to go: a browser is redirected to the dashboard (/ui/; /docs when it is off), anything else gets these links as JSON',
        security: [],
        response: { 200: Home, 302: z.null().meta({ description: 'To /ui/, or /docs when the dashboard is off (a client that accepts text/html)' }) },
      },
    },
    async (request, reply) => {
      if (request.headers.accept?.includes('text/html')) return reply.redirect(ui ?? '/docs', 302);
      return home;
    },
  );
}
