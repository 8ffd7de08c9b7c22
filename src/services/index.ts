import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import { TokenStore } from './auth.js';
import { childProcessSpawner, type RunContext, type Spawner } from './runner/index.js';
import { RunTracker } from './tracker.js';
import { SyncLimiter } from './limiter.js';

export interface Services {
  config: Config;
  tokens: TokenStore;
  /** Identifies this server instance; every child carries it in EXECD_INSTANCE. */
  instanceId: string;
  runContext: RunContext;
  tracker: RunTracker;
  syncRuns: SyncLimiter;
  startedAt: Date;
  close(): Promise<void>;
}

export function createServices(config: Config, deps: { spawner?: Spawner | undefined; log: FastifyBaseLogger }): Services {
  const instanceId = randomUUID();
  const tracker = new RunTracker();
  return {
    config,
    tokens: new TokenStore(config.tokens),
    instanceId,
    runContext: {
      spawner: deps.spawner ?? childProcessSpawner,
      pipeDrainMs: config.pipeDrainMs,
      childPath: config.childPath,
      marker: { EXECD_INSTANCE: instanceId },
    },
    tracker,
    syncRuns: new SyncLimiter(config.maxSyncRuns),
    startedAt: new Date(),
    async close() {
      await tracker.terminateAll();
    },
  };
}
