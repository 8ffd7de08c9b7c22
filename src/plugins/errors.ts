import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { ApiError, problem, type ErrorCode, type Problem } from '../errors.js';

const BY_STATUS: Record<number, ErrorCode> = {
  400: 'VALIDATION_FAILED',
  401: 'UNAUTHORIZED',
  403: 'FORBIDDEN',
  404: 'NOT_FOUND',
  409: 'CONFLICT',
  413: 'PAYLOAD_TOO_LARGE',
  415: 'UNSUPPORTED_MEDIA_TYPE',
  429: 'RATE_LIMITED',
};

/** Fastify's own messages can name internals; these are the ones we pass on, reworded. */
const FASTIFY_DETAIL: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'the request body is larger than the server accepts',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'send the body as application/json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'the JSON body is empty',
  FST_ERR_CTP_INVALID_JSON_BODY: 'the body is not valid JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'Content-Length does not match the body',
  FST_ERR_CTP_INVALID_CONTENT_TYPE: 'the Content-Type header is invalid',
  FST_ERR_BAD_URL: 'the URL is malformed',
};

export function sendProblem(reply: FastifyReply, body: Problem, retryAfter?: number): FastifyReply {
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
  if (body.status === 401) reply.header('www-authenticate', 'Bearer realm="execd"');
  return reply.code(body.status).type('application/problem+json').send(JSON.stringify(body));
}

/** Turn any error into problem+json, hiding the internals of a 5xx. */
export function toProblem(err: FastifyError | ApiError | Error): { body: Problem; retryAfter?: number } {
  if (err instanceof ApiError) return { body: err.toProblem(), retryAfter: err.retryAfter };
  if (hasZodFastifySchemaValidationErrors(err)) {
    const where = (err as FastifyError).validationContext ?? 'body';
    const errors = err.validation.map((v) => ({ in: where, path: v.instancePath || '/', message: v.message ?? 'invalid' }));
    const detail = errors.map((e) => `${e.in}${e.path === '/' ? '' : e.path}: ${e.message}`).join('; ');
    return { body: problem('VALIDATION_FAILED', detail, { errors }) };
  }
  const fe = err as FastifyError;
  const status = fe.statusCode ?? 500;
  const code = BY_STATUS[status];
  if (code && status < 500) {
    let detail = (fe.code && FASTIFY_DETAIL[fe.code]) ?? (err instanceof SyntaxError ? 'the body is not valid JSON' : undefined);
    detail ??= fe.validation ? fe.message : ERROR_DETAIL_FALLBACK[status] ?? 'the request was refused';
    return { body: problem(code, detail) };
  }
  return { body: problem('INTERNAL', 'an unexpected error occurred; it has been logged') };
}

const ERROR_DETAIL_FALLBACK: Record<number, string> = {
  400: 'the request is malformed',
  404: 'no such resource',
  413: 'the request body is larger than the server accepts',
  415: 'send the body as application/json',
};

export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, request, reply) => {
    const { body, retryAfter } = toProblem(err);
    if (body.status >= 500 && !(err instanceof ApiError)) request.log.error({ err }, 'unhandled error');
    else request.log.debug({ code: body.code, detail: body.detail }, 'request refused');
    return sendProblem(reply, body, retryAfter);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}`)),
  );
}
