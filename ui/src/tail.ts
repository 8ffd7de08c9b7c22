/**
 * The live tail of one job over WebSocket (GET /v1/jobs/{id}/stream), with the bookkeeping that makes a
 * resumed tail exact: per stream, the offset of the next byte wanted. Every chunk is cut to what was not
 * seen yet (nothing twice), a reconnect asks from exactly those offsets (nothing missing), and a `gap` frame
 * is reported as a range of bytes that are gone for this viewer. No DOM here: the socket, the HTTP probe
 * and the timers are given, so test/unit/ui runs it under Node.
 */

import { fromBase64, toBase64 } from '../../src/client/bytes.js'; // the typed client's, browser-safe

export type StreamName = 'stdout' | 'stderr';
export type Encoding = 'binary' | 'base64';

/** The part of a WebSocket the tail uses (the browser's WebSocket fits). */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: string): void;
  close(code?: number): void;
}

export interface StateInfo {
  type: 'state';
  state: string;
  pid: number | null;
  startedAt: string | null;
  finishedAt: string | null;
  error: { code: string; message: string } | null;
}
export interface ExitInfo {
  type: 'exit';
  state: string;
  exitCode: number | null;
  signal: string | null;
  returncode: number | null;
  timedOut: boolean;
  [key: string]: unknown;
}

export type TailStatus = 'connecting' | 'live' | 'reconnecting' | 'ended' | 'refused';

export interface TailListener {
  output(stream: StreamName, bytes: Uint8Array, offset: number): void;
  gap(stream: StreamName, from: number, to: number): void;
  state?(frame: StateInfo): void;
  exit?(frame: ExitInfo): void;
  /** A refused client frame, or the job went away (`code` as execd's error frames name it). */
  error?(code: string, detail: string): void;
  status?(status: TailStatus, detail: string): void;
}

/** Per stream, the offset of the next byte wanted, and what a chunk or a gap adds to what was seen. */
export class Offsets {
  readonly next: Record<StreamName, number>;

  constructor(start: Partial<Record<StreamName, number>> = {}) {
    this.next = { stdout: start.stdout ?? 0, stderr: start.stderr ?? 0 };
  }

  /**
   * A chunk [offset, offset + length): `fresh` is the part past what was seen (null when all of it was), and
   * `hole` the bytes between what was seen and the chunk when it starts further on (which execd never does
   * without a gap frame; reported rather than hidden).
   */
  accept(stream: StreamName, offset: number, bytes: Uint8Array): { fresh: Uint8Array | null; hole: [number, number] | null } {
    const next = this.next[stream];
    const end = offset + bytes.length;
    if (end <= next) return { fresh: null, hole: null };
    const hole: [number, number] | null = offset > next ? [next, offset] : null;
    const fresh = offset < next ? bytes.subarray(next - offset) : bytes;
    this.next[stream] = end;
    return { fresh, hole };
  }

  /** A gap frame: the part of [from, to) not already passed, or null. */
  skip(stream: StreamName, from: number, to: number): [number, number] | null {
    const next = this.next[stream];
    if (to <= next) return null;
    this.next[stream] = to;
    return [Math.max(from, next), to];
  }
}

/** A binary output frame: byte 0 the stream (1 stdout, 2 stderr), bytes 1-8 the offset (uint64 big-endian), then the bytes. */
export function parseBinaryFrame(buf: ArrayBuffer): { stream: StreamName; offset: number; bytes: Uint8Array } | null {
  if (buf.byteLength < 9) return null;
  const view = new DataView(buf);
  const tag = view.getUint8(0);
  if (tag !== 1 && tag !== 2) return null;
  const offset = Number(view.getBigUint64(1, false));
  if (!Number.isSafeInteger(offset)) return null;
  return { stream: tag === 1 ? 'stdout' : 'stderr', offset, bytes: new Uint8Array(buf, 9) };
}

/** How long to wait before the n-th reconnect in a row (n from 1): quick first, doubling, at most 10 s. */
export function reconnectDelay(failures: number): number {
  return Math.min(10_000, 250 * 2 ** Math.max(0, failures - 1));
}

export interface TailOptions {
  jobId: string;
  listener: TailListener;
  /** Opens a socket (the browser: `new WebSocket(url, protocols)`). */
  connect(url: string, protocols: string[]): SocketLike;
  /** The same URL over plain HTTP, to learn why a handshake failed (a browser only sees close 1006). */
  probe(path: string): Promise<{ status: number; body: Record<string, unknown> }>;
  /** ws://host + path. */
  wsUrl(path: string): string;
  protocols(): string[];
  encoding?: Encoding;
  start?: Partial<Record<StreamName, number>>;
  setTimer?(fn: () => void, ms: number): unknown;
  clearTimer?(timer: unknown): void;
}

/** One job's live output, resumed exactly across reconnects until the exit frame (or a refusal). */
export class OutputTail {
  readonly offsets: Offsets;
  encoding: Encoding;
  private socket: SocketLike | null = null;
  private timer: unknown = null;
  private failures = 0;
  private done = false;
  private readonly text = new TextEncoder();

  constructor(private readonly o: TailOptions) {
    this.offsets = new Offsets(o.start);
    this.encoding = o.encoding ?? 'binary';
  }

  get ended(): boolean {
    return this.done;
  }

  /** The path of the next connection: from the next byte wanted of each stream. */
  path(): string {
    const { stdout, stderr } = this.offsets.next;
    return `/v1/jobs/${encodeURIComponent(this.o.jobId)}/stream?encoding=${this.encoding}&stdoutOffset=${stdout}&stderrOffset=${stderr}`;
  }

  start(): void {
    if (this.done || this.socket) return;
    this.status(this.failures === 0 ? 'connecting' : 'reconnecting', '');
    let ws: SocketLike;
    try {
      ws = this.o.connect(this.o.wsUrl(this.path()), this.o.protocols());
    } catch (err) {
      // A browser throws SyntaxError for a subprotocol that is not an HTTP token (a token with / = , : @ or a space).
      this.refuse(`the WebSocket could not be opened (${(err as Error).message}): a browser can send only tokens of letters, digits and !#$%&'*+-.^_\`|~`);
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.socket = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.failures = 0;
      this.status('live', '');
    };
    ws.onmessage = (ev) => {
      if (this.socket === ws) this.frame(ev.data);
    };
    ws.onerror = () => {};
    ws.onclose = () => {
      if (this.socket !== ws) return;
      this.socket = null;
      if (!this.done) void this.lost(opened);
    };
  }

  /** Stop for good (the page closed). */
  stop(): void {
    this.done = true;
    this.drop();
  }

  /**
   * The network went away (the browser's `offline`): close now; `reconnect()` (the browser's `online`) connects
   * again at once, and until then retries go on with the usual delays, in case no `online` event comes.
   */
  disconnect(): void {
    if (this.done) return;
    this.drop();
    this.failures++;
    this.status('reconnecting', 'offline');
    this.retryLater();
  }

  /** Reconnect now (the browser's `online`), unless connected or finished. */
  reconnect(): void {
    if (this.done || this.socket) return;
    if (this.timer !== null) (this.o.clearTimer ?? clearTimeout)(this.timer as ReturnType<typeof setTimeout>);
    this.timer = null;
    this.start();
  }

  /** Send stdin (a job created with "stdin": {"stream": true}, or on a terminal: keystrokes) as UTF-8; false when not connected. */
  sendStdin(data: string, eof = false): boolean {
    const ws = this.socket;
    if (!ws || ws.readyState !== 1) return false;
    const frame: Record<string, unknown> = { type: 'stdin' };
    if (data !== '') frame.data = toBase64(this.text.encode(data)); // base64 on binary and base64 connections alike
    if (eof) frame.eof = true;
    ws.send(JSON.stringify(frame));
    return true;
  }

  /** Set the window size of a job on a terminal (`{"type":"resize"}`, docs/tty.md); false when not connected. */
  sendResize(cols: number, rows: number): boolean {
    const ws = this.socket;
    if (!ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify({ type: 'resize', cols, rows }));
    return true;
  }

  private drop(): void {
    const ws = this.socket;
    this.socket = null;
    if (this.timer !== null) (this.o.clearTimer ?? clearTimeout)(this.timer as ReturnType<typeof setTimeout>);
    this.timer = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        /* already closed */
      }
    }
  }

  private status(status: TailStatus, detail: string): void {
    this.o.listener.status?.(status, detail);
  }

  private frame(data: unknown): void {
    if (data instanceof ArrayBuffer) {
      const chunk = parseBinaryFrame(data);
      if (chunk) this.output(chunk.stream, chunk.offset, chunk.bytes);
      return;
    }
    if (typeof data !== 'string') return;
    let f: Record<string, unknown>;
    try {
      f = JSON.parse(data) as Record<string, unknown>;
    } catch {
      return;
    }
    const stream = f.stream === 'stderr' ? 'stderr' : 'stdout';
    switch (f.type) {
      case 'output': {
        const text = String(f.data ?? '');
        this.output(stream, Number(f.offset), f.encoding === 'base64' ? fromBase64(text) : this.text.encode(text));
        break;
      }
      case 'gap': {
        const range = this.offsets.skip(stream, Number(f.from), Number(f.to));
        if (range) this.o.listener.gap(stream, range[0], range[1]);
        break;
      }
      case 'state':
        this.o.listener.state?.(f as unknown as StateInfo);
        break;
      case 'exit':
        this.done = true;
        this.status('ended', String(f.state));
        this.o.listener.exit?.(f as unknown as ExitInfo);
        break;
      case 'error':
        this.o.listener.error?.(String(f.code), String(f.detail));
        if (f.code === 'NOT_FOUND' || f.code === 'UNAUTHORIZED') this.refuse(String(f.detail));
        break;
    }
  }

  private output(stream: StreamName, offset: number, bytes: Uint8Array): void {
    const { fresh, hole } = this.offsets.accept(stream, offset, bytes);
    if (hole) this.o.listener.gap(stream, hole[0], hole[1]);
    if (fresh) this.o.listener.output(stream, fresh, offset + bytes.length - fresh.length);
  }

  private refuse(detail: string): void {
    this.done = true;
    this.drop();
    this.status('refused', detail);
  }

  /** The connection closed before the exit frame: learn why when it never opened, then retry from the offsets. */
  private async lost(opened: boolean): Promise<void> {
    this.failures = opened ? 1 : this.failures + 1;
    if (!opened) {
      // The network itself failing the probe: retry as after any drop.
      const answer = await this.o.probe(this.path()).catch(() => null);
      if (this.done || this.socket) return;
      if (answer?.status === 400 && this.encoding === 'binary' && JSON.stringify(answer.body).includes('encoding')) {
        this.encoding = 'base64'; // an execd without binary frames: the same bytes as base64 text frames
        this.failures = 0;
        this.start();
        return;
      }
      if (answer && [400, 401, 403, 404].includes(answer.status)) {
        this.refuse(String(answer.body.detail ?? `HTTP ${answer.status}`));
        return;
      }
    }
    this.status('reconnecting', `retrying in ${reconnectDelay(this.failures)} ms`);
    this.retryLater();
  }

  private retryLater(): void {
    this.timer = (this.o.setTimer ?? setTimeout)(() => {
      this.timer = null;
      this.start();
    }, reconnectDelay(this.failures));
  }
}
