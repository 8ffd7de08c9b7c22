/** What a subscriber hears from an OutputLog. Offsets are absolute byte offsets in the stream. */
export type LogEvent =
  | {
      type: 'data';
      offset: number;
      data: Buffer;
      /**
       * When the subscription assembled the bytes itself (a read from the log, a batch of live chunks) and was
       * asked for `headroom`: a buffer of headroom + data.length bytes whose tail is `data` (the same memory),
       * so a listener can put a header before the bytes without copying them.
       */
      room?: Buffer;
    }
  | { type: 'end'; end: number; truncated: boolean; /** Bytes produced past the kept ones and dropped (the cap, a full disk). */ dropped: number }
  | { type: 'error'; error: Error };

export type LogListener = (event: LogEvent) => void;

/** A read of a log whose job was removed (DELETE, retention) meanwhile: the bytes are gone. */
export class OutputRemovedError extends Error {
  override name = 'OutputRemovedError';
  constructor() {
    super('the output was removed');
  }
}

/** A run of reads of one log (a subscription catching up): the log's file stays open between them. */
export interface LogReader {
  /**
   * Up to `length` bytes from `offset` (fewer at the end), in a buffer of `headroom` + n bytes whose first
   * `headroom` bytes are left to the caller: the data is its subarray(headroom); a file read goes into `into` (a
   * subarray of it) when it is large enough. RangeError past the end;
   * OutputRemovedError once the log is removed.
   */
  read(offset: number, length: number, headroom: number, into?: Buffer): Promise<Buffer>;
  /**
   * Bytes from `offset` that the log holds in memory, as a subarray of its own Buffer (at most `length`, within
   * one chunk; no headroom, no copy), or null when they are only in the file.
   */
  peek?(offset: number, length: number): Buffer | null;
  /** Let the file go (once the reads in flight are done). */
  close(): void;
}

/** The part of OutputLog a subscription reads from. */
export interface LogSource {
  readonly end: number;
  readonly closed: boolean;
  readonly truncated: boolean;
  readonly dropped: number;
  openReader(): LogReader;
}

export interface SubscribeOptions {
  /** Most bytes in one data event: the size of catch-up reads and of a batch (default 256 KiB). */
  chunkBytes?: number;
  /**
   * Live chunks appended in one turn of the event loop go out as one data event (at setImmediate, or at
   * once when they reach chunkBytes): fewer, larger frames when output is fast; a lone chunk still goes
   * out in the turn it was written.
   */
  batch?: boolean;
  /** Bytes kept free before the data of events the subscription assembles (`room`): a frame header. */
  headroom?: number;
  /**
   * Memory for the chunk read ahead while paused: a chunk is read ahead only once `tryReserve` granted its
   * size, which goes back (`release`) when the chunk is delivered or dropped. Without it, no read-ahead.
   */
  readAhead?: ReadAheadBudget;
}

/** Where a subscription reserves the memory of its read-ahead (see SubscribeOptions.readAhead). */
export interface ReadAheadBudget {
  tryReserve(bytes: number): boolean;
  release(bytes: number): void;
}

export const DEFAULT_CHUNK_BYTES = 256 * 1024;
/** A catch-up takes bytes the log holds in memory as they are (no read, no copy) when they are at least this many (or all it wants). */
const PEEK_MIN_BYTES = 64 * 1024;

/** Bytes read from the log: `data`, and, when it was read into a buffer with headroom, that buffer. */
interface Got {
  offset: number;
  data: Buffer;
  room: Buffer | undefined;
}

/**
 * One reader of one log. It never makes the writer wait:
 * - behind the end, it reads from the log at its own pace ("catch-up"), one
 *   chunk at a time, keeping the log's file open while it does;
 * - at the end, each new chunk is handed to the listener as it is written
 *   ("live"), or, with `batch`, the chunks of one turn of the event loop as one;
 * - `pause()` stops delivery (the log keeps the bytes; at most one chunk is
 *   read ahead meanwhile), `resume()` catches up from where it stopped: exact
 *   delivery with back-pressure (HTTP follow, WebSocket viewers);
 * - `skip()` jumps to the current end and says which bytes were skipped: a
 *   viewer that asked for freshness over completeness (lag=skip) reports a gap.
 * `data` events arrive in order without overlap; `end` (or `error`) comes last, once.
 */
export class LogSubscription {
  private paused = false;
  private pumping = false;
  private done = false;
  private reader: LogReader | null = null;
  /** A chunk read while paused, delivered first on resume (if still where the subscriber is). */
  private ahead: Got | null = null;
  /** Bytes reserved for the chunk read ahead (or being read ahead). */
  private aheadReserved = 0;
  /** Live chunks of this turn not yet delivered (batch): they start at `position - batchBytes`. */
  private batchParts: Buffer[] = [];
  private batchBytes = 0;
  private batchScheduled = false;
  private readonly chunkBytes: number;
  private readonly batch: boolean;
  private readonly headroom: number;
  private readonly readAhead: ReadAheadBudget | null;
  /** A buffer the listener gave back (recycle): the next read from the file goes into it. Held only while behind. */
  private spare: Buffer | null = null;

  constructor(
    private readonly log: LogSource,
    /** The offset of the next byte this subscriber gets (bytes batched but not yet delivered count as got). */
    public position: number,
    private readonly listener: LogListener,
    /** Called once when the subscription ends, however it ends. */
    private readonly detach: () => void = () => {},
    options: SubscribeOptions = {},
  ) {
    this.chunkBytes = Math.max(1, options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
    this.batch = options.batch ?? false;
    this.headroom = options.headroom ?? 0;
    this.readAhead = options.readAhead ?? null;
    queueMicrotask(() => void this.pump());
  }

  get closed(): boolean {
    return this.done;
  }

  /** The offset of the next byte this subscriber will get. */
  get next(): number {
    return this.position - this.batchBytes;
  }

  /** The log's end now: the bytes [next, end) are kept and not delivered yet. */
  get logEnd(): number {
    return this.log.end;
  }

  pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.unbatch();
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    void this.pump();
  }

  /** Jump to the log's current end; returns the range [from, to) this subscriber will never get. */
  skip(): { from: number; to: number } {
    this.unbatch();
    const from = this.position;
    this.position = Math.max(this.position, this.log.end);
    this.dropAhead();
    return { from, to: this.position };
  }

  /**
   * The listener is done with the `room` of a data event (its frame was written): the subscription may read into
   * it again. Only a `room` the subscription made, and nothing may use it after. Kept while the subscriber is behind.
   */
  recycle(room: Buffer): void {
    if (this.done || this.spare !== null || this.position >= this.log.end || room.length !== this.headroom + this.chunkBytes) return;
    this.spare = room;
  }

  /** Stop listening; no event follows. */
  close(): void {
    this.finish();
  }

  /** Called by the log after it kept `data` at `offset`. */
  onAppend(offset: number, data: Buffer): void {
    if (this.done || this.paused || this.pumping) return;
    const end = offset + data.length;
    if (end <= this.position) return;
    if (offset > this.position) {
      void this.pump();
      return;
    }
    let part = offset === this.position ? data : data.subarray(this.position - offset);
    const room = this.chunkBytes - this.batchBytes; // ≥ 1: a batch of chunkBytes goes out at once
    if (part.length > room) {
      // More than one event holds (a read takes up to 1 MiB of a fast pipe): what fits now, the rest from
      // the log at the subscriber's pace, so a listener never gets more than chunkBytes in one turn.
      part = part.subarray(0, room);
      this.position += part.length;
      if (this.batch) {
        this.batchParts.push(part);
        this.batchBytes += part.length;
        this.flushBatch();
      } else this.emit({ type: 'data', offset: this.position - part.length, data: part });
      void this.pump();
      return;
    }
    this.position = end;
    if (!this.batch) {
      this.emit({ type: 'data', offset: end - part.length, data: part });
      return;
    }
    this.batchParts.push(part);
    this.batchBytes += part.length;
    if (this.batchBytes >= this.chunkBytes) this.flushBatch();
    else if (!this.batchScheduled) {
      this.batchScheduled = true;
      setImmediate(() => {
        this.batchScheduled = false;
        this.flushBatch();
      });
    }
  }

  /** Called by the log when no more bytes will come. */
  onClose(): void {
    this.flushBatch();
    if (!this.pumping) this.maybeEnd();
  }

  /** Called by the log when it is gone (its job was removed). */
  onRemoved(): void {
    if (this.done) return;
    this.unbatch();
    this.finish();
    this.emit({ type: 'error', error: new OutputRemovedError() });
  }

  /** Deliver the batched live chunks as one data event. */
  private flushBatch(): void {
    if (this.batchBytes === 0 || this.done) return;
    const parts = this.batchParts;
    const n = this.batchBytes;
    this.batchParts = [];
    this.batchBytes = 0;
    const offset = this.position - n;
    if (parts.length === 1 && this.headroom === 0) {
      this.emit({ type: 'data', offset, data: parts[0]! });
      return;
    }
    const room = Buffer.allocUnsafe(this.headroom + n);
    let at = this.headroom;
    for (const p of parts) at += p.copy(room, at);
    this.emit({ type: 'data', offset, data: room.subarray(this.headroom), room });
  }

  /** Forget the batched chunks: the subscriber is back where they started (the log keeps them). */
  private unbatch(): void {
    if (this.batchBytes === 0) return;
    this.position -= this.batchBytes;
    this.batchParts = [];
    this.batchBytes = 0;
  }

  private async read(at: number): Promise<Got> {
    this.reader ??= this.log.openReader();
    const n = Math.min(this.chunkBytes, this.log.end - at);
    const held = this.reader.peek?.(at, n) ?? null;
    if (held !== null && (held.length === n || held.length >= PEEK_MIN_BYTES)) return { offset: at, data: held, room: undefined };
    const into = this.spare ?? undefined;
    this.spare = null;
    const buf = await this.reader.read(at, n, this.headroom, into);
    return { offset: at, data: buf.subarray(this.headroom), room: this.headroom > 0 ? buf : undefined };
  }

  private async pump(): Promise<void> {
    if (this.pumping || this.done) return;
    this.pumping = true;
    try {
      for (;;) {
        if (this.done) return;
        if (this.ahead !== null && this.ahead.offset !== this.position) this.dropAhead(); // skipped meanwhile
        if (this.paused) break; // the chunk read ahead, if any, stays held
        let got = this.ahead;
        if (got !== null) {
          this.dropAhead(); // delivered now: its memory moves to the subscriber's buffer
        } else {
          if (this.position >= this.log.end) break;
          const at = this.position;
          got = await this.read(at);
          if (this.done) return;
          if (got.offset !== this.position) continue; // skipped meanwhile
          if (this.paused) {
            if (this.reserveAhead(this.headroom + got.data.length)) this.ahead = got; // paused meanwhile: held, if memory allows
            continue;
          }
        }
        if (got.data.length === 0) break;
        this.position = got.offset + got.data.length;
        this.emit({ type: 'data', offset: got.offset, data: got.data, room: got.room });
        // Paused by that chunk: read the next one now, while the subscriber drains (if memory allows).
        const next = this.headroom + Math.min(this.chunkBytes, this.log.end - this.position);
        if (this.paused && !this.done && this.position < this.log.end && this.reserveAhead(next)) {
          const at = this.position;
          const ahead = await this.read(at);
          if (this.done) return;
          if (this.aheadReserved > 0) this.ahead = ahead; // else skipped meanwhile: dropped
        }
      }
    } catch (err) {
      if (!this.done) {
        this.finish();
        this.emit({ type: 'error', error: err as Error });
      }
      return;
    } finally {
      this.pumping = false;
    }
    if (this.ahead === null) this.dropAhead(); // no chunk held: no memory reserved for one
    if (this.position >= this.log.end && this.ahead === null) this.releaseReader(); // live: the file is not needed
    this.maybeEnd();
  }

  private maybeEnd(): void {
    if (this.done || this.paused || this.batchBytes > 0 || !this.log.closed || this.position < this.log.end) return;
    this.finish();
    this.emit({ type: 'end', end: this.log.end, truncated: this.log.truncated, dropped: this.log.dropped });
  }

  private emit(event: LogEvent): void {
    try {
      this.listener(event);
    } catch {
      // A listener's bug must not reach the writer (the job's output pump).
      this.finish();
    }
  }

  /** Reserve the memory of one chunk read ahead; false: none is read ahead. */
  private reserveAhead(bytes: number): boolean {
    if (this.readAhead === null || this.aheadReserved > 0) return false;
    if (!this.readAhead.tryReserve(bytes)) return false;
    this.aheadReserved = bytes;
    return true;
  }

  /** Forget the chunk read ahead, and give its memory back. */
  private dropAhead(): void {
    this.ahead = null;
    if (this.aheadReserved === 0) return;
    this.readAhead?.release(this.aheadReserved);
    this.aheadReserved = 0;
  }

  private releaseReader(): void {
    this.reader?.close();
    this.reader = null;
    this.spare = null;
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.dropAhead();
    this.batchParts = [];
    this.batchBytes = 0;
    this.releaseReader();
    this.detach();
  }
}
