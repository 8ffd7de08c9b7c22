import { errorCodes, type FastifyInstance, type FastifyRequest } from 'fastify';

/** The route answering this request declares a body schema. */
const takesBody = (request: FastifyRequest): boolean => request.routeOptions.schema?.body !== undefined;

/**
 * A route that takes no body (`POST /v1/jobs/{id}/cancel`, `DELETE`…) accepts an empty one whatever its
 * Content-Type: clients that always send `content-type: application/json`, and `curl -X POST -d ''`
 * (form-encoded, zero bytes). Routes with a body keep their answers: an empty JSON body is a 400, a
 * body of another media type a 415 (JSON only).
 */
export function acceptEmptyBodies(app: FastifyInstance): void {
  const json = app.getDefaultJsonParser('error', 'error');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '' && !takesBody(request)) return done(null, undefined);
    json(request, body as string, done);
  });
  // Every other media type: nothing to parse but an empty body on a route without one.
  app.addContentTypeParser('*', (request, _payload, done) => {
    const empty = request.headers['content-length'] === '0' && request.headers['transfer-encoding'] === undefined;
    if (empty && !takesBody(request)) return done(null, undefined);
    done(new errorCodes.FST_ERR_CTP_INVALID_MEDIA_TYPE(String(request.headers['content-type'] ?? '')), undefined);
  });
}
