import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import type { RunSpec } from '../runner/index.js';
import { runSync, type SyncRun } from '../services/sync.js';

/** Aborts when the client goes away before its answer is written (the response closes unfinished). */
export function clientGone(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}

/**
 * How a request runs a command synchronously: admitted for its principal by the
 * command policy (403 COMMAND_NOT_ALLOWED; run-as user, cwd, ceilings and limits
 * applied), then run by runSync, terminated if the client leaves first.
 */
export function syncRunner(app: FastifyInstance, request: FastifyRequest, reply: FastifyReply): (spec: RunSpec) => Promise<SyncRun> {
  return async (asked) => {
    const principal = request.principal;
    if (!principal) throw new ApiError('UNAUTHORIZED', 'send Authorization: Bearer <token>');
    const { spec } = await app.security.admit(principal, asked, request.audit);
    return runSync(app.services, spec, { signal: clientGone(reply), audit: request.audit });
  };
}
