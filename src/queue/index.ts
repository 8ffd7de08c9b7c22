import type { Config } from '../config.js';
import { MemoryJobQueue, type QueueDeps } from './memory.js';
import { RedisJobQueue } from './redis/index.js';
import type { JobQueue } from './types.js';

export type { JobQueue, JobQueueEvents, ListRequest, SubmitRequest, Submitted } from './types.js';
export type { JobOutputReader, StreamName } from './job-output.js';
export type { LogEvent, LogListener, LogSubscription } from './log-subscription.js';
export { JOB_STATES, isTerminal, type JobState } from './job.js';
export type { QueueDeps } from './memory.js';

/** The job queue named by EXECD_QUEUE_BACKEND. Nothing outside src/queue knows which one runs. */
export function createJobQueue(config: Config, deps: QueueDeps): JobQueue {
  switch (config.queueBackend) {
    case 'memory':
      return new MemoryJobQueue(config, deps);
    case 'redis':
      return new RedisJobQueue(config, deps);
  }
}
