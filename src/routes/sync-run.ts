import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../errors.js';
import { auditAbandoned } from '../plugins/auth.js';
import type { RunSpec } from '../runner/index.js';
import { runSync, type SyncRun } from '../services/sync.js';

/** A signal that aborts when the client goes away before its answer is written; dispose() stops listening. */
export function clientGone(reply: FastifyReply): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) controller.abort();
  };
  reply.raw.once('close', onClose);
  return { signal: controller.signal, dispose: () => reply.raw.removeListener('close', onClose) };
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
    const gone = clientGone(reply);
    try {
      return await runSync(app.services, spec, { signal: gone.signal, audit: request.audit });
    } finally {
      gone.dispose();
      auditAbandoned(request, reply);
    }
  };
}
