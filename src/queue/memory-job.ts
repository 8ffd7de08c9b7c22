import type { CommandSpec } from '../schemas/run.js';
import type { Grant } from '../security/policy.js';
import type { RunHandle } from '../runner/index.js';
import { newJobId } from './id.js';
import type { JobOutput } from './job-output.js';
import type { StoredJob } from './store.js';

/** A job as the memory backend holds it: the record plus its place in line, its output and its process. */
export interface MemoryJob extends StoredJob {
  /** Slot in its queue's FIFO while queued. */
  ticket: number | null;
  output: JobOutput | null;
  handle: RunHandle | null;
  /** A stop asked for before the process existed. */
  stopReason: 'cancel' | 'shutdown' | null;
}

/** One literal with every field, so V8 keeps them in-object: a queued job costs a few hundred bytes. */
export function newMemoryJob(
  seq: number,
  queue: string,
  spec: CommandSpec,
  idempotency: MemoryJob['idempotency'],
  ownerId: string | null,
  grant: Grant | null,
): MemoryJob {
  return {
    id: newJobId(),
    seq,
    queue,
    state: 'queued',
    createdAt: Date.now(),
    ownerId,
    grant,
    startedAt: null,
    finishedAt: null,
    spec,
    pid: null,
    result: null,
    error: null,
    retainTicket: null,
    removed: false,
    idempotency,
    ticket: null,
    output: null,
    handle: null,
    stopReason: null,
  };
}
