import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { RunContext, Spawner } from '../runner/index.js';
import { selectSpawner } from '../runner/native.js';
import { RunTracker } from '../ops/tracker.js';
import { SyncLimiter } from './limiter.js';
import { createJobQueue, type JobQueue } from '../queue/index.js';
export { loadQueueBackend } from '../queue/index.js';
import { toJobRunSpec } from '../spec/run-spec.js';
import { applyGrant } from '../security/admission.js';
import { CommandNotAllowed } from '../security/errors.js';
import { prepareInstanceFiles, removeInstanceFiles, type InstanceFiles } from '../ops/data-dir.js';

export interface Services {
  config: Config;
  /** Identifies this server instance; every child carries it in EXECD_INSTANCE. */
  instanceId: string;
  /** This instance's private directory of output files (`<data dir>/<instance id>`), made at start, removed at close. */
  files: InstanceFiles;
  runContext: RunContext;
  tracker: RunTracker;
  syncRuns: SyncLimiter;
  /** Asynchronous jobs, whichever backend runs them. */
  jobs: JobQueue;
  startedAt: Date;
  /** Test only (EXECD_TEST_BALLAST_BYTES): touched memory held for the server's life, so benchmarks can spawn from a big process. */
  ballast: Buffer | null;
  close(): Promise<void>;
}

export function createServices(config: Config, deps: { spawner?: Spawner | undefined; log: FastifyBaseLogger }): Services {
  const instanceId = randomUUID();
  // Before anything can write output: a data directory that is not private stops the start (ConfigError).
  const files = prepareInstanceFiles(config.dataDir, instanceId);
  const tracker = new RunTracker();
  const runContext: RunContext = {
    // EXECD_SPAWNER; selecting the native spawner starts its helpers, before any ballast makes forking them slow.
    spawner: deps.spawner ?? selectSpawner(config.spawner),
    pipeDrainMs: config.pipeDrainMs,
    childPath: config.childPath,
    marker: { EXECD_INSTANCE: instanceId },
  };
  const jobs = createJobQueue(config, {
    runContext,
    filesDir: files.filesDir,
    // The grant the policy gate gave at submission: run-as uid/gid, cwd, ceilings and limits hold for jobs as for sync runs.
    prepareRun: (spec, grant) => {
      if (!grant) throw new CommandNotAllowed('the job was never admitted by the command policy, so it does not run');
      return applyGrant(toJobRunSpec(spec, config), grant);
    },
    log: deps.log,
    onRunStart: (handle, jobId, ownerId) => tracker.add({ handle, kind: 'job', jobId, ownerId }),
  });
  return {
    config,
    instanceId,
    files,
    runContext,
    tracker,
    syncRuns: new SyncLimiter(config.maxSyncRuns),
    jobs,
    startedAt: new Date(),
    ballast: config.testBallastBytes > 0 ? Buffer.alloc(config.testBallastBytes, 1) : null,
    async close() {
      // Jobs first: queued ones are canceled and running ones terminated; then any sync run left.
      await Promise.all([jobs.close(), tracker.terminateAll()]);
      removeInstanceFiles(files, instanceId); // retained jobs' output goes with the server (the records are in memory, or in Redis)
    },
  };
}
