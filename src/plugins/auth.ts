import type { FastifyInstance } from 'fastify';
import { ApiError } from '../errors.js';
import { bearerToken, type Principal } from '../services/auth.js';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

/** Bearer-token auth for every route of the scope it is called in (all of /v1). */
export function registerAuth(scope: FastifyInstance): void {
  if (!scope.hasRequestDecorator('principal')) scope.decorateRequest('principal', null);
  scope.addHook('onRequest', async (request) => {
    const token = bearerToken(request.headers.authorization, request.headers['sec-websocket-protocol'] as string | undefined);
    if (token === null) throw new ApiError('UNAUTHORIZED', 'send Authorization: Bearer <token>');
    const principal = scope.services.tokens.authenticate(token);
    if (!principal) throw new ApiError('UNAUTHORIZED', 'the bearer token is not valid');
    request.principal = principal;
  });
}
