import type { FastifyReply } from 'fastify';
import { ApiError } from '../errors.js';
import { auditAbandoned } from '../plugins/auth.js';
import { SERVER_GID, SERVER_UID } from './identity.js';
import type { Services } from './index.js';
import { admitCommand } from './policy-gate.js';
import { ResourceExhaustedError, runToCompletion, SpawnError, type CompletedRun, type RunSpec } from './runner/index.js';

/** A finished sync run and the identity it ran as. */
export type SyncRun = CompletedRun & { uid: number; gid: number };

/**
 * Run a command for a synchronous request: admitted by the policy gate (403
 * COMMAND_NOT_ALLOWED; run-as user, cwd, ceilings and limits applied),
 * bounded by the sync-run limit, tracked (so /v1/processes marks it and
 * shutdown stops it), and terminated when the client goes away before the answer.
 */
export async function runSync(services: Services, asked: RunSpec, reply: FastifyReply): Promise<SyncRun> {
  const { spec } = await admitCommand(reply.request, asked);
  const release = services.syncRuns.acquire();
  try {
    const run = await runToCompletion(spec, services.runContext, {
      onStart: (handle) => {
        services.tracker.add({ handle, kind: 'run' });
        const onClose = () => {
          if (!reply.raw.writableFinished) handle.terminate('cancel');
        };
        reply.raw.once('close', onClose);
        void handle.done.then(() => reply.raw.removeListener('close', onClose));
      },
    });
    const ran: SyncRun = Object.assign(run, { uid: spec.uid ?? SERVER_UID, gid: spec.gid ?? SERVER_GID });
    const o = run.outcome;
    Object.assign(reply.request.audit, { pid: o.pid, returncode: run.returncode, signal: o.signal, timedOut: o.timedOut, durationMs: o.durationMs });
    return ran;
  } catch (err) {
    if (err instanceof SpawnError) {
      reply.request.audit.errno = err.errno;
      throw new ApiError('SPAWN_FAILED', err.message, { errno: err.errno });
    }
    if (err instanceof ResourceExhaustedError) {
      reply.request.audit.errno = err.errno;
      throw new ApiError('RESOURCE_EXHAUSTED', err.message, { errno: err.errno }, { retryAfter: 1 });
    }
    throw err;
  } finally {
    release();
    auditAbandoned(reply.request, reply);
  }
}
