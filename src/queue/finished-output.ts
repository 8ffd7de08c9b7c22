import type { StreamName } from '../runner/index.js';
import type { JobOutputReader, OutputSnapshot, TruncatedReason } from './job-output.js';
import { LogSubscription, type LogListener, type LogReader, type LogSource, type SubscribeOptions } from './log-subscription.js';

const EMPTY = Buffer.alloc(0);

const read = async (offset: number, length: number): Promise<Buffer> => {
  if (offset > 0) throw new RangeError(`offset ${offset} is past the end (0)`);
  void length;
  return EMPTY;
};

const reader: LogReader = { read: (offset, length) => read(offset, length), peek: () => null, close: () => {} };

/** A closed log without a byte: what a subscription reads from an empty finished stream. */
const emptySource: LogSource = Object.freeze({ end: 0, closed: true, truncated: false, dropped: 0, openReader: () => reader });

const emptySnapshot: OutputSnapshot = Object.freeze({ end: 0, read, close: async () => {} });

/**
 * The output of a finished job that wrote nothing and dropped nothing (a `/bin/true`, a job cancelled before it
 * started): one shared, immutable reader instead of a JobOutput per retained job (two OutputLogs with their
 * options, closures and subscriber sets). It answers as such a JobOutput does once closed: end 0, closed, not
 * truncated; a subscription gets `end` at once. There is no file to delete, so dispose has nothing to do.
 */
export const EMPTY_FINISHED_OUTPUT: JobOutputReader & { close(): void; dispose(): void } = Object.freeze({
  end: (_stream: StreamName) => 0,
  closed: (_stream: StreamName) => true,
  truncated: (_stream: StreamName) => false,
  truncatedReason: (_stream: StreamName): TruncatedReason | null => null,
  read: (_stream: StreamName, offset: number, length: number) => read(offset, length),
  snapshot: async (_stream: StreamName) => emptySnapshot,
  subscribe: (_stream: StreamName, fromOffset: number, listener: LogListener, options?: SubscribeOptions) =>
    new LogSubscription(emptySource, fromOffset, listener, () => {}, options),
  close: () => {},
  dispose: () => {},
});

/** True when a closed output holds nothing and lost nothing: EMPTY_FINISHED_OUTPUT answers the same. */
export function isEmptyFinished(output: JobOutputReader): boolean {
  return (['stdout', 'stderr'] as const).every((s) => output.closed(s) && output.end(s) === 0 && !output.truncated(s));
}
