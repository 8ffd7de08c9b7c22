import { SERVER_GID, SERVER_UID } from '../runner/ran-as.js';
import { startRunRetrying, type RunHandle, type RunSpec } from '../runner/index.js';
import { returncodeOf } from '../runner/result.js';
import type { BackendHooks, Claim, JobBackend, QueueDeps } from './backend.js';
import type { LocalRuns } from './local-runs.js';
import { finalState, SHUTDOWN_ERROR, startError, toJobResult } from './outcome.js';

const WORKER_FAILED = { code: 'INTERNAL', message: 'the worker failed; the error has been logged' };
const FENCED = { code: 'WORKER_LOST', message: 'the worker lost Redis and stopped the job rather than risk running it twice' };

/**
 * The one worker loop, whichever backend delivered the job: claim it, start
 * its process (a few tries while the server is out of resources), wait for
 * it, record how it ended. Never rejects.
 */
export function workerLoop(backend: () => JobBackend, runs: LocalRuns, deps: QueueDeps): BackendHooks['work'] {
  return async (id) => {
    const run = runs.begin(id); // before the claim: a cancel that reaches this process from now on finds it
    let claim: Claim | null = null;
    try {
      claim = await backend().claim(id, run);
      if (!claim) return; // canceled, lost, deleted or never accepted: it never runs
      let handle: RunHandle;
      let runSpec: RunSpec;
      try {
        runSpec = deps.prepareRun(claim.spec, claim.grant);
        handle = await startRunRetrying(runSpec, claim.output, deps.runContext, () => run.stopReason !== null);
      } catch (err) {
        if (startError(err).code === 'INTERNAL') deps.log.error({ err, jobId: id }, 'job could not be started');
        const error = run.stopReason === 'shutdown' ? SHUTDOWN_ERROR : startError(err);
        await backend().finish(claim, run.stopReason ? 'canceled' : 'failed', null, error);
        return;
      }
      run.handle = handle;
      deps.onRunStart?.(handle, id, claim.ownerId);
      if (run.stopReason) handle.terminate(run.stopReason);
      run.started.open(handle);
      await backend().markStarted(claim, handle.pid);
      deps.log.debug({ jobId: id, queue: claim.queue, pid: handle.pid }, 'job started');
      const outcome = await handle.done;
      run.handle = null;
      const returncode = returncodeOf(outcome);
      const ran = { uid: runSpec.uid ?? SERVER_UID, gid: runSpec.gid ?? SERVER_GID };
      const result = toJobResult(outcome, returncode, claim.output, ran);
      if (run.fenced) await backend().finish(claim, 'lost', result, FENCED);
      else await backend().finish(claim, finalState(outcome, returncode), result, outcome.terminationReason === 'shutdown' ? SHUTDOWN_ERROR : null);
    } catch (err) {
      deps.log.error({ err, jobId: id }, 'job worker failed');
      if (claim) await backend().finish(claim, 'failed', null, WORKER_FAILED).catch(() => {});
    } finally {
      runs.end(run);
    }
  };
}
