import { isAscii } from 'node:buffer';
import type { Job } from '../schemas/jobs.js';
import { BINARY_HEADER_BYTES, BINARY_STREAM_IDS, type ErrorFrame, type ExitFrame, type GapFrame, type StateFrame } from '../schemas/stream.js';
import type { StreamName } from '../queue/index.js';

/**
 * The frames the server sends, as JSON text. Output frames are the hot path
 * (every byte of every job passes here once per viewer), so they are written
 * by hand; src/schemas/stream.ts describes them and the tests parse them with it.
 */

/**
 * `bytes` as UTF-8 text (invalid sequences become U+FFFD). ASCII, the common
 * case of logs, takes a path twice as fast: one-byte strings copied as latin1,
 * never re-encoded.
 */
export function textOutputFrame(stream: StreamName, offset: number, bytes: Buffer): Buffer {
  const head = `{"type":"output","stream":"${stream}","offset":${offset},"data":`;
  if (isAscii(bytes)) return Buffer.from(`${head}${JSON.stringify(bytes.toString('latin1'))}}`, 'latin1');
  return Buffer.from(`${head}${JSON.stringify(bytes.toString('utf8'))}}`);
}

/** Base64 is plain ASCII: the frame goes out as latin1 bytes, with no UTF-8 encoding pass. */
export function base64OutputFrame(stream: StreamName, offset: number, bytes: Buffer): Buffer {
  return Buffer.from(`{"type":"output","stream":"${stream}","offset":${offset},"encoding":"base64","data":"${bytes.toString('base64')}"}`, 'latin1');
}

/**
 * Write the header of a binary output frame into the first BINARY_HEADER_BYTES of `frame` (the stream's id,
 * then the offset as an unsigned 64-bit big-endian integer); the bytes follow it. Offsets stay below 2^53.
 */
export function putBinaryHeader(frame: Buffer, stream: StreamName, offset: number): Buffer {
  frame[0] = BINARY_STREAM_IDS[stream];
  frame.writeUInt32BE(Math.floor(offset / 0x1_0000_0000), 1);
  frame.writeUInt32BE(offset >>> 0, 5);
  return frame;
}

/** The header of a binary output frame alone (its bytes are sent after it: Outbox.sendParts). */
export function binaryOutputHeader(stream: StreamName, offset: number): Buffer {
  return putBinaryHeader(Buffer.allocUnsafe(BINARY_HEADER_BYTES), stream, offset);
}

export function stateFrame(job: Job): string {
  const frame: StateFrame = { type: 'state', state: job.state, pid: job.pid, startedAt: job.startedAt, finishedAt: job.finishedAt, error: job.error };
  return JSON.stringify(frame);
}

export function exitFrame(job: Job): string {
  const r = job.result;
  const frame: ExitFrame = {
    type: 'exit',
    state: job.state,
    exitCode: r?.exitCode ?? null,
    signal: r?.signal ?? null,
    returncode: r?.returncode ?? null,
    timedOut: r?.timedOut ?? false,
    truncated: r?.truncated ?? { stdout: false, stderr: false },
    truncatedReason: r?.truncatedReason ?? { stdout: null, stderr: null },
  };
  return JSON.stringify(frame);
}

export function gapFrame(stream: StreamName, from: number, to: number): string {
  const frame: GapFrame = { type: 'gap', stream, from, to };
  return JSON.stringify(frame);
}

export function errorFrame(code: string, detail: string): string {
  const frame: ErrorFrame = { type: 'error', code, detail };
  return JSON.stringify(frame);
}
