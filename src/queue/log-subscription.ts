/** What a subscriber hears from an OutputLog. Offsets are absolute byte offsets in the stream. */
export type LogEvent =
  | { type: 'data'; offset: number; data: Buffer }
  | { type: 'end'; end: number; truncated: boolean }
  | { type: 'error'; error: Error };

export type LogListener = (event: LogEvent) => void;

/** A read of a log whose job was removed (DELETE, retention) meanwhile: the bytes are gone. */
export class OutputRemovedError extends Error {
  override name = 'OutputRemovedError';
  constructor() {
    super('the output was removed');
  }
}

/** The part of OutputLog a subscription reads from. */
export interface LogSource {
  readonly end: number;
  readonly closed: boolean;
  readonly truncated: boolean;
  read(offset: number, length: number): Promise<Buffer>;
}

/** Catch-up reads go this many bytes at a time. */
const READ_CHUNK = 256 * 1024;

/**
 * One reader of one log. It never makes the writer wait:
 * - behind the end, it reads from the log at its own pace ("catch-up");
 * - at the end, each new chunk is handed to the listener as it is written ("live");
 * - `pause()` stops delivery (the log keeps the bytes), `resume()` catches up
 *   from where it stopped: exact delivery with back-pressure (HTTP follow);
 * - `skip()` jumps to the current end and says which bytes were skipped: a
 *   viewer that cannot keep up reports a gap instead (WebSocket).
 * `data` events arrive in order without overlap; `end` (or `error`) comes last, once.
 */
export class LogSubscription {
  private paused = false;
  private pumping = false;
  private done = false;

  constructor(
    private readonly log: LogSource,
    /** The offset of the next byte this subscriber gets. */
    public position: number,
    private readonly listener: LogListener,
    /** Called once when the subscription ends, however it ends. */
    private readonly detach: () => void = () => {},
  ) {
    queueMicrotask(() => this.pump());
  }

  get closed(): boolean {
    return this.done;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    void this.pump();
  }

  /** Jump to the log's current end; returns the range [from, to) this subscriber will never get. */
  skip(): { from: number; to: number } {
    const from = this.position;
    this.position = Math.max(this.position, this.log.end);
    return { from, to: this.position };
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
    const from = this.position;
    this.position = end;
    this.emit({ type: 'data', offset: from, data: from === offset ? data : data.subarray(from - offset) });
  }

  /** Called by the log when no more bytes will come. */
  onClose(): void {
    if (!this.pumping) this.maybeEnd();
  }

  /** Called by the log when it is gone (its job was removed). */
  onRemoved(): void {
    if (this.done) return;
    this.finish();
    this.emit({ type: 'error', error: new OutputRemovedError() });
  }

  private async pump(): Promise<void> {
    if (this.pumping || this.done) return;
    this.pumping = true;
    try {
      while (!this.done && !this.paused && this.position < this.log.end) {
        const at = this.position;
        const data = await this.log.read(at, Math.min(READ_CHUNK, this.log.end - at));
        if (this.done) return;
        if (this.position !== at) continue; // skipped meanwhile
        if (data.length === 0) break;
        this.position = at + data.length;
        this.emit({ type: 'data', offset: at, data });
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
    this.maybeEnd();
  }

  private maybeEnd(): void {
    if (this.done || this.paused || !this.log.closed || this.position < this.log.end) return;
    this.finish();
    this.emit({ type: 'end', end: this.log.end, truncated: this.log.truncated });
  }

  private emit(event: LogEvent): void {
    try {
      this.listener(event);
    } catch {
      // A listener's bug must not reach the writer (the job's output pump).
      this.finish();
    }
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.detach();
  }
}
