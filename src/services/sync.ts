import type { Services } from './index.js';
import { runToCompletion, type CompletedRun, type RunSpec } from '../runner/index.js';
import { NotStarted } from '../runner/errors.js';
import { ranAs } from '../runner/ran-as.js';

/** A finished sync run and the identity it ran as. */
export type SyncRun = CompletedRun & { uid: number; gid: number };

/** What a sync run needs of the server. */
export type SyncDeps = Pick<Services, 'syncRuns' | 'runContext' | 'tracker'>;

export interface SyncRunOptions {
  /** Aborted when the caller goes away before the answer: the run is terminated ('cancel'). */
  signal: AbortSignal;
  /** The request's audit facts: pid, returncode, signal, timedOut, durationMs, or the errno of a failed start. */
  audit: Record<string, unknown>;
}

/**
 * Run an admitted command (Security.admit) for a synchronous request: bounded
 * by the sync-run limit (TooManySyncRuns), tracked (so /v1/processes marks it
 * and shutdown stops it), and terminated when `signal` aborts before the end.
 */
export async function runSync(deps: SyncDeps, spec: RunSpec, options: SyncRunOptions): Promise<SyncRun> {
  const { signal, audit } = options;
  const release = deps.syncRuns.acquire();
  try {
    const run = await runToCompletion(spec, deps.runContext, {
      onStart: (handle) => {
        deps.tracker.add({ handle, kind: 'run' });
        const onAbort = () => handle.terminate('cancel');
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        void handle.done.then(() => signal.removeEventListener('abort', onAbort));
      },
    });
    const ran: SyncRun = Object.assign(run, ranAs(spec));
    const o = run.outcome;
    Object.assign(audit, { pid: o.pid, returncode: run.returncode, signal: o.signal, timedOut: o.timedOut, durationMs: o.durationMs });
    return ran;
  } catch (err) {
    if (err instanceof NotStarted) audit.errno = err.errno;
    throw err;
  } finally {
    release();
  }
}
