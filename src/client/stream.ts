import { ExecdError } from './errors.js';
import { fromBase64 } from './bytes.js';
import { request, queryString, type Transport } from './http.js';
import { SocketReader, sleep, socketAuth } from './socket.js';
import type { ErrorFrame, ExitFrame, GapFrame, JobStreamEvent, Offsets, OutputEvent, StreamName } from './types.js';

/**
 * GET /v1/jobs/{id}/stream as an async iterator that survives dropped connections: it keeps the offset
 * after the last byte it yielded per stream and reconnects with stdoutOffset/stderrOffset, so nothing is
 * lost and nothing comes twice. Bytes that cannot come (not kept: past maxOutputBytes, a full disk, a
 * removed job) are yielded as a `gap` {stream, from, to}. Output comes as binary frames (docs/websocket.md);
 * a server without them (400 on encoding=binary) is read with base64 text frames. The server's default
 * lag=wait holds every byte for a slow reader; this reader bounds its own memory (maxBufferedBytes).
 */
export interface StreamOptions {
  /** Where to start each stream (default 0). */
  offsets?: Offsets;
  /** Only these streams are yielded (both by default). */
  streams?: StreamName[];
  signal?: AbortSignal;
  /** Consecutive failed connection attempts before giving up (default 8; the delay doubles from 100 ms to 5 s). */
  maxAttempts?: number;
  /** 'binary' (default) or 'base64' output frames. */
  encoding?: 'binary' | 'base64';
  /**
   * Bytes received but not yet taken by the consumer before the connection is paused (closed, then resumed
   * from the offsets once they are taken): what a slow consumer may cost in memory. Default 8 MiB.
   */
  maxBufferedBytes?: number;
  /** Told of each reconnection (the CLI says nothing; a dashboard may show it). */
  onReconnect?: (attempt: number, offsets: Required<Offsets>) => void;
}

const STREAM_BYTE: Record<number, StreamName> = { 1: 'stdout', 2: 'stderr' };
const HEADER = 9; // stream byte + uint64 offset

/** A binary output frame: byte 0 the stream (1 stdout, 2 stderr), bytes 1..8 the offset (uint64 big-endian), then the bytes. */
export function parseBinaryFrame(bytes: Uint8Array): OutputEvent {
  const stream = STREAM_BYTE[bytes[0] ?? 0];
  if (bytes.length < HEADER || stream === undefined) throw new ExecdError(0, 'PROTOCOL', `a binary frame of ${bytes.length} bytes with stream byte ${bytes[0]}`);
  const offset = Number(new DataView(bytes.buffer, bytes.byteOffset, HEADER).getBigUint64(1));
  return { type: 'output', stream, offset, data: bytes.subarray(HEADER) };
}

const utf8 = new TextEncoder();

export async function* streamJob(t: Transport, id: string, opts: StreamOptions = {}): AsyncGenerator<JobStreamEvent, void, undefined> {
  const next = { stdout: opts.offsets?.stdout ?? 0, stderr: opts.offsets?.stderr ?? 0 };
  const wanted = new Set(opts.streams ?? ['stdout', 'stderr']);
  const maxAttempts = opts.maxAttempts ?? 8;
  let encoding = opts.encoding ?? 'binary';
  let failures = 0;
  let delay = 100;
  const path = `/v1/jobs/${encodeURIComponent(id)}/stream`;

  /** Bring a chunk in line with what was yielded: drop what came before; bytes that never came are a gap. */
  function* deliver(ev: OutputEvent): Generator<OutputEvent | GapFrame> {
    const at = next[ev.stream];
    const end = ev.offset + ev.data.length;
    if (end <= at) return;
    if (ev.offset > at) yield* skip(ev.stream, ev.offset);
    const data = ev.offset < at ? ev.data.subarray(at - ev.offset) : ev.data;
    next[ev.stream] = end;
    if (data.length > 0 && wanted.has(ev.stream)) yield { type: 'output', stream: ev.stream, offset: end - data.length, data };
  }

  /** The bytes [next, to) of a stream will not come: told once, as a gap. */
  function* skip(stream: StreamName, to: number): Generator<GapFrame> {
    const from = next[stream];
    if (to <= from) return;
    next[stream] = to;
    if (wanted.has(stream)) yield { type: 'gap', stream, from, to };
  }

  while (!opts.signal?.aborted) {
    const query = queryString({ encoding, stdoutOffset: next.stdout, stderrOffset: next.stderr });
    const socket = new SocketReader(`${t.url.replace(/^http/, 'ws')}${path}${query}`, socketAuth(t.token), opts.maxBufferedBytes ?? 8 << 20);
    const abort = () => socket.close();
    opts.signal?.addEventListener('abort', abort, { once: true });
    let lastError: ErrorFrame | undefined;
    let exit: ExitFrame | undefined;
    try {
      for (;;) {
        const item = await socket.next();
        if (item.kind === 'binary') {
          yield* deliver(parseBinaryFrame(item.bytes));
          continue;
        }
        if (item.kind === 'close') {
          if (exit || opts.signal?.aborted) return;
          if (item.paused) break; // everything received is taken: go on from here at once
          if (item.opened) {
            failures = 0;
            delay = 100;
            if (item.code === 1008 || (lastError?.code === 'NOT_FOUND')) {
              const e = lastError ?? { code: 'UNAUTHORIZED', detail: item.reason || 'the server closed the stream (1008)' };
              throw new ExecdError(e.code === 'NOT_FOUND' ? 404 : e.code === 'UNAUTHORIZED' ? 401 : 403, e.code, e.detail);
            }
          } else {
            const verdict = await probe(t, `${path}${query}`, opts.signal);
            if (verdict === 'no-binary' && encoding === 'binary') {
              encoding = 'base64';
              break;
            }
            if (++failures >= maxAttempts) {
              throw verdict instanceof ExecdError ? verdict : new ExecdError(0, 'UNREACHABLE', `cannot open ${t.url}${path} (${failures} attempts)`);
            }
          }
          await sleep(delay, opts.signal);
          delay = Math.min(delay * 2, 5000);
          opts.onReconnect?.(failures, { ...next });
          break;
        }
        const frame = JSON.parse(item.text) as { type: string } & Record<string, unknown>;
        if (frame.type === 'output') {
          const data = frame.encoding === 'base64' ? fromBase64(frame.data as string) : utf8.encode(frame.data as string);
          yield* deliver({ type: 'output', stream: frame.stream as StreamName, offset: frame.offset as number, data });
        } else if (frame.type === 'gap') {
          yield* skip(frame.stream as StreamName, frame.to as number);
        } else if (frame.type === 'exit') {
          exit = frame as unknown as ExitFrame;
          yield exit;
        } else if (frame.type === 'error') {
          lastError = frame as unknown as ErrorFrame;
          yield lastError;
        } else if (frame.type === 'state') {
          yield frame as unknown as JobStreamEvent;
        }
      }
    } finally {
      opts.signal?.removeEventListener('abort', abort);
      socket.close();
    }
  }
}

/**
 * Why a WebSocket did not open (neither browsers nor Node tell the handshake's status): the same URL over
 * plain HTTP answers the refusal as problem+json. A refusal (401, 403, 404, a bad query) is final;
 * 'no-binary' is a server without binary frames; anything else is worth another attempt.
 */
async function probe(t: Transport, pathAndQuery: string, signal?: AbortSignal): Promise<ExecdError | 'retry' | 'no-binary'> {
  try {
    await request(t, pathAndQuery, { signal });
    return 'retry';
  } catch (err) {
    if (!(err instanceof ExecdError)) throw err;
    if (err.status === 400 && /WebSocket endpoint/.test(err.detail)) return 'retry';
    const errors = (err.problem.errors ?? []) as { path?: string }[];
    if (err.status === 400 && errors.some((e) => e.path === '/encoding')) return 'no-binary';
    if (err.refused && err.status !== 429) throw err;
    return err;
  }
}
