import type { FastifyReply } from 'fastify';
import { ApiError } from '../errors.js';
import type { Services } from './index.js';
import { runToCompletion, SpawnError, type CompletedRun, type RunSpec } from './runner/index.js';

/**
 * Run a command for a synchronous request: bounded by the sync-run limit,
 * tracked (so /v1/processes marks it and shutdown stops it), and terminated
 * when the client goes away before the answer.
 */
export async function runSync(services: Services, spec: RunSpec, reply: FastifyReply): Promise<CompletedRun> {
  const release = services.syncRuns.acquire();
  try {
    return await runToCompletion(spec, services.runContext, {
      onStart: (handle) => {
        services.tracker.add({ handle, kind: 'run' });
        const onClose = () => {
          if (!reply.raw.writableFinished) handle.terminate('cancel');
        };
        reply.raw.once('close', onClose);
        void handle.done.then(() => reply.raw.removeListener('close', onClose));
      },
    });
  } catch (err) {
    if (err instanceof SpawnError) throw new ApiError('SPAWN_FAILED', err.message, { errno: err.errno });
    throw err;
  } finally {
    release();
  }
}
