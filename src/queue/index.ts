import type { Config } from '../config.js';
import type { QueueDeps } from './backend.js';
import { QueueFront } from './front.js';
import { MemoryBackend } from './memory/index.js';
import type { RedisBackend } from './redis/backend.js';
import type { JobQueue } from './types.js';

export type { JobQueue, JobQueueEvents, ListRequest, SubmitRequest, Submitted } from './types.js';
export type { JobOutputReader, StreamName } from './job-output.js';
export type { LogEvent, LogListener, LogSubscription, SubscribeOptions } from './log-subscription.js';
export { JOB_STATES, isTerminal, type JobState } from './job.js';
export type { QueueDeps } from './backend.js';
export { BackendUnavailable, Conflict, JobNotFound, QueueError, QueueFull, ShuttingDown, UnknownQueue } from './errors.js';

/** The Redis backend's class once loaded: BullMQ and ioredis (~5 MiB of heap, ~15 MiB of RSS) load only when it is the backend. */
let redisBackend: typeof RedisBackend | undefined;

/** Load what EXECD_QUEUE_BACKEND needs beyond the memory backend; before createJobQueue. */
export async function loadQueueBackend(config: Pick<Config, 'queueBackend'>): Promise<void> {
  if (config.queueBackend === 'redis') redisBackend ??= (await import('./redis/backend.js')).RedisBackend;
}

/** The job queue named by EXECD_QUEUE_BACKEND: one front over its backend. Nothing outside src/queue knows which one runs. */
export function createJobQueue(config: Config, deps: QueueDeps): JobQueue {
  return new QueueFront(config, deps, (hooks) => {
    switch (config.queueBackend) {
      case 'memory':
        return new MemoryBackend(config, deps, hooks);
      case 'redis':
        if (!redisBackend) throw new Error('the Redis backend is not loaded: await loadQueueBackend(config) before createJobQueue');
        return new redisBackend(config, deps, hooks);
    }
  });
}
