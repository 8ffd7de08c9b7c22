import type { FastifyBaseLogger } from 'fastify';
import type { JobQueue } from '../queue/index.js';
import { killProcessGroup } from '../runner/index.js';
import type { RunTracker } from './tracker.js';

export interface ShutdownDeps {
  jobs: JobQueue;
  tracker: RunTracker;
  log: FastifyBaseLogger;
  /** EXECD_SHUTDOWN_GRACE_MS: running work goes on until grace minus killGraceMs, gets SIGTERM, and SIGKILL at grace. */
  graceMs: number;
  /** EXECD_KILL_GRACE_MS. */
  killGraceMs: number;
  /** How long to wait for a killed group's pipes (EXECD_PIPE_DRAIN_MS) before giving up on its output. */
  pipeDrainMs: number;
  /** Closes the HTTP side once no process runs (app.close(): WebSocket viewers get 1001, then the services close). */
  closeServer: () => Promise<void>;
  /**
   * HTTP requests being answered (probes and WebSocket streams aside). The drain lets them finish within the
   * grace: on an API node of the Redis backend the jobs run elsewhere, and a long-poll accepted before the
   * shutdown must still get its answer.
   */
  requestsInFlight?: () => number;
}

export type ShutdownPhase = 'serving' | 'draining' | 'terminating' | 'closing' | 'closed';

/**
 * A graceful shutdown, in order, once however often it is asked for:
 *
 * 1. draining: /readyz and every new request answer 503 SHUTTING_DOWN; the
 *    queues start nothing more and cancel what waits (error SHUTTING_DOWN);
 *    running jobs and sync runs go on;
 * 2. at grace minus the kill grace, what still runs gets SIGTERM (its whole
 *    process group), and at grace SIGKILL: nothing outlives the grace;
 * 3. the server closes: WebSocket viewers have had their `exit` frames, the
 *    rest get close 1001.
 */
export class Shutdown {
  private phaseNow: ShutdownPhase = 'serving';
  private running: Promise<void> | null = null;

  constructor(private readonly deps: ShutdownDeps) {}

  get phase(): ShutdownPhase {
    return this.phaseNow;
  }

  /** True from the first shutdown request on: new work is refused. */
  get draining(): boolean {
    return this.phaseNow !== 'serving';
  }

  /** Refuse new work without the drain (app.close() called directly, as tests do). */
  refuseNewWork(): void {
    if (this.phaseNow === 'serving') this.phaseNow = 'closing';
  }

  /** Drain, stop what is left at the grace, close the server. The same promise however often it is called. */
  run(reason: string): Promise<void> {
    return (this.running ??= this.drainAndClose(reason));
  }

  /** SIGKILL every process group still running, now (the last resort before a forced exit). Returns how many. */
  killNow(): number {
    let killed = 0;
    for (const run of this.deps.tracker.list()) if (killProcessGroup(run.handle.pid, 'SIGKILL')) killed++;
    return killed;
  }

  /** Resolves once no counted request is in flight (the drain bounds the wait by the grace). */
  private async requestsDone(): Promise<void> {
    const inflight = this.deps.requestsInFlight;
    while (inflight && inflight() > 0) await new Promise((r) => setTimeout(r, 20));
  }

  private async drainAndClose(reason: string): Promise<void> {
    const { jobs, tracker, log, graceMs, killGraceMs } = this.deps;
    const t0 = Date.now();
    this.phaseNow = 'draining';
    log.info({ reason, graceMs, processGroups: tracker.size }, 'shutting down: draining (no new work, queued jobs canceled)');
    // Jobs first (no queued job may start), then every process group: sync runs are tracked there too.
    const drained = jobs
      .drain()
      .then(() => tracker.idle())
      .then(() => this.requestsDone());

    if (!(await settledBy(drained, t0 + graceMs - killGraceMs))) {
      this.phaseNow = 'terminating';
      const runs = tracker.list();
      log.warn({ processGroups: runs.length, killGraceMs }, 'shutdown grace: SIGTERM to the process groups still running');
      void jobs.close(); // running jobs end `canceled`, error SHUTTING_DOWN
      for (const run of runs) run.handle.terminate('shutdown');
      if (!(await settledBy(drained, t0 + graceMs))) {
        const killed = this.killNow();
        log.warn({ processGroups: killed }, 'shutdown grace over: SIGKILL to the process groups still running');
        // Reaped within the pipe drain; a group that cannot even be killed is not waited for.
        if (!(await settledBy(drained, Date.now() + this.deps.pipeDrainMs + 1000))) {
          log.error({ processGroups: tracker.size }, 'process groups survived SIGKILL; closing anyway');
        }
      }
    }

    this.phaseNow = 'closing';
    await jobs.close();
    await this.deps.closeServer();
    this.phaseNow = 'closed';
    log.info({ reason, durationMs: Date.now() - t0 }, 'shut down');
  }
}

/** True when `p` settles before the wall-clock `deadline`. */
async function settledBy(p: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  // A timer even when the deadline has passed: a `p` that has already settled still wins.
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([p.then(() => true as const, () => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
