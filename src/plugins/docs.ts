import type { FastifyInstance } from 'fastify';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import { transformOpenApi } from '../openapi-transform.js';
import { OPENAPI_INFO } from '../openapi-info.js';

/** OpenAPI 3.1 from the zod schemas, served at /openapi.json, with a UI at /docs. */
export async function registerDocs(app: FastifyInstance): Promise<void> {
  await app.register(fastifySwagger, {
    openapi: OPENAPI_INFO,
    transform: jsonSchemaTransform,
    transformObject: transformOpenApi,
    hideUntagged: true,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: true });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
