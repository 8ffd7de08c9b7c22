import { Readable } from 'node:stream';
import { ApiError } from '../errors.js';
import type { JobOutputReader, StreamName } from '../queue/job-output.js';
import { OutputRemovedError, type LogSubscription } from '../queue/log-subscription.js';
import type { OutputSnapshot } from '../queue/output-log.js';

/** Bytes read from a log at a time. */
export const READ_CHUNK = 256 * 1024;
const CHUNK = READ_CHUNK;

/** The 404 of a read whose job was deleted (or retired) before any byte went out. */
export const outputGone = (): ApiError => new ApiError('NOT_FOUND', 'the job was removed, and its output with it');

/**
 * The bytes [from, to) of a snapshot as a Readable, a chunk at a time. The
 * snapshot keeps them readable even if the job is deleted meanwhile, so a
 * response that promised them (Content-Length) gets them all. Closes the
 * snapshot when it ends, however it ends.
 */
export function rangeReadable(snapshot: OutputSnapshot, from: number, to: number): Readable {
  let at = from;
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    snapshot.close().catch(() => {});
  };
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      if (at >= to) {
        release();
        this.push(null);
        return;
      }
      snapshot.read(at, Math.min(CHUNK, to - at)).then(
        (data) => {
          if (data.length === 0) {
            release();
            this.push(null);
            return;
          }
          at += data.length;
          this.push(data);
        },
        (err: Error) => this.destroy(err),
      );
    },
    destroy(err, callback) {
      release();
      callback(err);
    },
  });
}

/**
 * The bytes of a stream from `from` on, live, until the log closes (its job is
 * terminal). Back-pressure pauses the subscription, never the writer: the log
 * keeps the bytes and the subscription catches up from them on resume.
 * `onEnd` runs when the log ends, before the stream does. A job removed meanwhile
 * fails it with `gone()` (a NOT_FOUND ApiError: the route answers 404) before the
 * first byte, and ends it cleanly after (chunked: the client keeps every byte sent).
 * `epilogue`, when given, is written last, after the log ended, on a line of its own
 * (a newline first unless the bytes sent ended with one): the job's status in-band,
 * for clients that cannot read HTTP trailers.
 */
export function followReadable(
  reader: JobOutputReader,
  stream: StreamName,
  from: number,
  onEnd?: () => void,
  gone: () => Error = outputGone,
  epilogue?: () => Promise<string>,
): Readable {
  // assigned once, below: the readable's callbacks need it, and the subscription's listener needs the readable
  // eslint-disable-next-line prefer-const
  let sub: LogSubscription | undefined;
  let pushed = false;
  let endsWithNewline = true;
  const finish = () => {
    onEnd?.();
    if (!epilogue) {
      readable.push(null);
      return;
    }
    epilogue().then(
      (line) => {
        readable.push(endsWithNewline ? line : `\n${line}`);
        readable.push(null);
      },
      (err: Error) => readable.destroy(err),
    );
  };
  const readable = new Readable({
    highWaterMark: CHUNK,
    read() {
      sub?.resume();
    },
    destroy(err, callback) {
      sub?.close();
      callback(err);
    },
  });
  sub = reader.subscribe(stream, from, (event) => {
    if (event.type === 'data') {
      if (event.data.length > 0) endsWithNewline = event.data[event.data.length - 1] === 0x0a;
      pushed = true;
      if (!readable.push(event.data)) sub!.pause();
    } else if (event.type === 'end') {
      finish();
    } else if (event.error instanceof OutputRemovedError) {
      if (pushed) {
        finish();
      } else {
        readable.destroy(gone());
      }
    } else {
      readable.destroy(event.error);
    }
  });
  return readable;
}
