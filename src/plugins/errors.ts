import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { ApiError, DomainError, ERROR_CODES, problem, type ErrorCode, type InvalidInput, type Problem } from '../errors.js';
import type { CalledProcessError, TimeoutExpired } from '../python/exceptions.js';
import type { ResourceExhaustedError, SpawnError } from '../runner/errors.js';
import type { QueueError } from '../queue/errors.js';
import type { CommandNotAllowed } from '../security/errors.js';
import type { TooManySyncRuns } from '../services/limiter.js';

/** Every domain error's code: a new DomainError subclass adds its class here and its row to DOMAIN_ERRORS. */
export type DomainCode =
  | InvalidInput['code']
  | SpawnError['code']
  | ResourceExhaustedError['code']
  | CommandNotAllowed['code']
  | TooManySyncRuns['code']
  | CalledProcessError['code']
  | TimeoutExpired['code']
  | QueueError['code'];

/**
 * The one place a domain error (errors.ts, DomainError) becomes an HTTP answer:
 * its API code (and so its status and title, ERROR_CODES). The problem carries
 * the error's message as `detail` and its `details` beside it; a 429 or 503
 * says Retry-After (the error's own, else 1 second).
 */
export const DOMAIN_ERRORS: Record<DomainCode, ErrorCode> = {
  VALIDATION_FAILED: 'VALIDATION_FAILED',
  SPAWN_FAILED: 'SPAWN_FAILED',
  RESOURCE_EXHAUSTED: 'RESOURCE_EXHAUSTED',
  COMMAND_NOT_ALLOWED: 'COMMAND_NOT_ALLOWED',
  TOO_MANY_SYNC_RUNS: 'QUEUE_FULL',
  COMMAND_FAILED: 'COMMAND_FAILED',
  TIMEOUT_EXPIRED: 'TIMEOUT_EXPIRED',
  JOB_NOT_FOUND: 'NOT_FOUND',
  // routes/jobs.ts answers it as a field of the request (InvalidInput); anywhere else, a 400 all the same
  UNKNOWN_QUEUE: 'VALIDATION_FAILED',
  QUEUE_FULL: 'QUEUE_FULL',
  BACKEND_UNAVAILABLE: 'BACKEND_UNAVAILABLE',
  CONFLICT: 'CONFLICT',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
};

/** The API code a domain error is answered with; undefined for a code without a row (answered 500, and logged). */
export const apiCodeOf = (err: DomainError): ErrorCode | undefined => (DOMAIN_ERRORS as Record<string, ErrorCode>)[err.code];

/** A domain error as the API answers it, or undefined when its code has no row. */
export function domainProblem(err: DomainError): { body: Problem; retryAfter?: number } | undefined {
  const code = apiCodeOf(err);
  if (code === undefined) return undefined;
  const { status } = ERROR_CODES[code];
  const retryAfter = err.retryAfter ?? (status === 429 || status === 503 ? 1 : undefined);
  return { body: problem(code, err.message, err.details), retryAfter };
}

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
  if (err instanceof DomainError) {
    const answer = domainProblem(err);
    if (answer) return answer;
  }
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
  // Any system call that met the descriptor limit (reading /proc, opening a file): the server's exhaustion, not a bug.
  const errno = (err as NodeJS.ErrnoException).code;
  if (errno === 'EMFILE' || errno === 'ENFILE') {
    return { body: problem('RESOURCE_EXHAUSTED', `the server is out of file descriptors for now (${errno}); retry later`), retryAfter: 1 };
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
    if (body.status >= 500 && !(err instanceof ApiError) && !(err instanceof DomainError && body.code !== 'INTERNAL')) request.log.error({ err }, 'unhandled error');
    else request.log.debug({ code: body.code, detail: body.detail }, 'request refused');
    return sendProblem(reply, body, retryAfter);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}`)),
  );
}
