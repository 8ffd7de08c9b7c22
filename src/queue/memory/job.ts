import type { CommandSpec } from '../../schemas/run.js';
import type { Grant } from '../../spec/grant.js';
import { newJobId } from '../id.js';
import { newJobRecord } from '../job.js';
import type { JobOutput } from '../job-output.js';
import type { EMPTY_FINISHED_OUTPUT } from '../finished-output.js';
import type { StoredJob } from '../store.js';

/** A job as the memory backend holds it: the record plus its place in line and its output. */
export interface MemoryJob extends StoredJob {
  /** Slot in its queue's FIFO while queued. */
  ticket: number | null;
  /** Its output; once finished without a byte, the shared EMPTY_FINISHED_OUTPUT. */
  output: JobOutput | typeof EMPTY_FINISHED_OUTPUT | null;
  /** The spec with env values and stdin, kept while attempts remain (the record's own is redacted at the first start). */
  fullSpec: CommandSpec | null;
  /** While scheduled: the timer that queues it. */
  timer: NodeJS.Timeout | null;
}

export function newMemoryJob(
  seq: number,
  queue: string,
  spec: CommandSpec,
  idempotency: MemoryJob['idempotency'],
  ownerId: string | null,
  grant: Grant | null,
  placed: { node: string; runAt: number | null },
): MemoryJob {
  return {
    ...newJobRecord(newJobId(), seq, queue, spec, Date.now(), { ownerId, grant }),
    // a new record: scheduled instead of queued when its start is delayed (job.ts)
    state: placed.runAt === null ? 'queued' : 'scheduled',
    runAt: placed.runAt,
    node: placed.node,
    fullSpec: null,
    timer: null,
    retainTicket: null,
    removed: false,
    idempotency,
    ticket: null,
    output: null,
  };
}
