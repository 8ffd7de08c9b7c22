import { Readable } from 'node:stream';
import type { JobOutputReader, StreamName } from './job-output.js';
import type { LogSubscription } from './log-subscription.js';

const CHUNK = 256 * 1024;

/** The bytes [from, to) of a stream as a Readable, read from the log a chunk at a time. */
export function rangeReadable(reader: JobOutputReader, stream: StreamName, from: number, to: number): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    for (let at = from; at < to; ) {
      const data = await reader.read(stream, at, Math.min(CHUNK, to - at));
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
 * `onEnd` runs when the log ends, before the stream does.
 */
export function followReadable(reader: JobOutputReader, stream: StreamName, from: number, onEnd?: () => void): Readable {
  let sub: LogSubscription | undefined;
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
      if (!readable.push(event.data)) sub!.pause();
    } else if (event.type === 'end') {
      onEnd?.();
      readable.push(null);
    } else {
      readable.destroy(event.error);
    }
  });
  return readable;
}
