import { DomainError } from '../errors.js';

/**
 * Why the queue refuses an operation, in the queue's own words: no HTTP status
 * here. The HTTP mapping is one table beside the error handler
 * (DOMAIN_ERRORS in plugins/errors.ts).
 */
export abstract class QueueError extends DomainError {
  override get name(): string {
    return this.constructor.name; // JobNotFound, QueueFull…
  }
  abstract override readonly code: 'JOB_NOT_FOUND' | 'UNKNOWN_QUEUE' | 'QUEUE_FULL' | 'BACKEND_UNAVAILABLE' | 'CONFLICT' | 'SHUTTING_DOWN';
}

export class JobNotFound extends QueueError {
  readonly code = 'JOB_NOT_FOUND';
  constructor(readonly jobId: string) {
    super(`no job ${JSON.stringify(jobId.slice(0, 64))}`);
  }
}

export class UnknownQueue extends QueueError {
  readonly code = 'UNKNOWN_QUEUE';
  constructor(
    readonly queue: string,
    known: readonly string[],
  ) {
    super(`no queue "${queue}" on this server (queues: ${known.join(', ')})`);
  }
}

/** The queue holds as many waiting jobs as it may, or an identical submit is still being accepted: try again shortly. */
export class QueueFull extends QueueError {
  readonly code = 'QUEUE_FULL';
}

/** The backend that keeps the jobs (Redis) does not answer: nothing was done, try again shortly. */
export class BackendUnavailable extends QueueError {
  readonly code = 'BACKEND_UNAVAILABLE';
}

/** The job is not in a state that allows the operation, or an Idempotency-Key was used with another body. */
export class Conflict extends QueueError {
  readonly code = 'CONFLICT';
}

/** This server is shutting down and takes no new jobs. */
export class ShuttingDown extends QueueError {
  readonly code = 'SHUTTING_DOWN';
}
