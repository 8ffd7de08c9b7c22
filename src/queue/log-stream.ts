import { Readable } from 'node:stream';
import { ApiError } from '../errors.js';
import type { JobOutputReader, StreamName } from './job-output.js';
import { OutputRemovedError, type LogSubscription } from './log-subscription.js';

/** Bytes read from a log at a time. */
export const READ_CHUNK = 256 * 1024;
const CHUNK = READ_CHUNK;

/** The 404 of a read whose job was deleted (or retired) before any byte went out. */
export const outputGone = (): ApiError => new ApiError('NOT_FOUND', 'the job was removed, and its output with it');

/**
 * The bytes [from, to) of a stream as a Readable, read from the log a chunk at a time.
 * A job removed before the first byte makes it fail with a NOT_FOUND ApiError (the route
 * then answers 404, no header having gone out); removed later, the stream errors and the
 * response is cut: the bytes promised by Content-Length no longer exist.
 */
export function rangeReadable(reader: JobOutputReader, stream: StreamName, from: number, to: number): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let at = from; at < to; ) {
      let data: Buffer;
      try {
        data = await reader.read(stream, at, Math.min(CHUNK, to - at));
      } catch (err) {
        throw at === from && err instanceof OutputRemovedError ? outputGone() : err;
      }
      if (data.length === 0) return;
      at += data.length;
      yield data;
    }
  }
  return Readable.from(chunks(), { objectMode: false });
}

/**
 * The bytes of a stream from `from` on, live, until the log closes (its job is
 * terminal). Back-pressure pauses the subscription, never the writer: the log
 * keeps the bytes and the subscription catches up from them on resume.
 * `onEnd` runs when the log ends, before the stream does. A job removed meanwhile
 * fails it with a NOT_FOUND ApiError before the first byte (a 404), and ends it
 * cleanly after (chunked: the client has every byte sent, and empty trailers).
 */
export function followReadable(reader: JobOutputReader, stream: StreamName, from: number, onEnd?: () => void): Readable {
  let sub: LogSubscription | undefined;
  let pushed = false;
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
      pushed = true;
      if (!readable.push(event.data)) sub!.pause();
    } else if (event.type === 'end') {
      onEnd?.();
      readable.push(null);
    } else if (event.error instanceof OutputRemovedError) {
      if (pushed) {
        onEnd?.();
        readable.push(null);
      } else {
        readable.destroy(outputGone());
      }
    } else {
      readable.destroy(event.error);
    }
  });
  return readable;
}
