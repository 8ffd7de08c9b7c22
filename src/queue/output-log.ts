import { closeSync, constants, fstatSync, openSync, rmSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { LogSubscription, OutputRemovedError, type LogListener, type LogReader, type LogSource, type SubscribeOptions } from './log-subscription.js';

export { OutputRemovedError };

/**
 * The bytes [0, end) of a log as they were when it was taken, readable to the
 * end even if the log is removed meanwhile (DELETE of its job): the memory
 * part is held, an open file outlives its unlink. `close()` lets them go.
 */
export interface OutputSnapshot {
  readonly end: number;
  /** Up to `length` bytes from `offset` (fewer at `end`). */
  read(offset: number, length: number): Promise<Buffer>;
  close(): Promise<void>;
}

export interface OutputLogOptions {
  /** Where the bytes go once they outgrow memory. */
  file: string;
  /** Bytes kept in memory while the log is written; past it everything moves to `file`. */
  memoryBytes: number;
  /** The cap (the job's maxOutputBytes): bytes past it are counted and dropped. */
  maxBytes: number;
  /** A spill that failed (disk full…): the log keeps what it has and drops the rest. */
  onError?: (err: Error) => void;
}

/**
 * Why a log dropped bytes: the cap (the job's maxOutputBytes), a full
 * filesystem or quota (ENOSPC, EDQUOT), or any other failure to write its file
 * (EIO, EFBIG, EROFS, a file already there…). The first reason stays.
 */
export type TruncatedReason = 'max_output' | 'disk_full' | 'write_failed';

/** The reason a failed write gives a log. */
export function writeFailureReason(err: Error): TruncatedReason {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? 'disk_full' : 'write_failed';
}

/**
 * The file is made by this log, never found: created exclusively and never
 * through a symlink (a name planted in the directory fails the spill instead
 * of being written through), readable by the server's user only.
 */
const CREATE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
/** Read back without following a symlink; the file opened must be the one created (same device and inode). */
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW;

/**
 * A finished log keeps at most this much in memory; a bigger one moves to its
 * file when it closes, so retained jobs cost disk, not RAM.
 */
export const FINISHED_MEMORY_BYTES = 16 * 1024;

const EMPTY = Buffer.alloc(0);

/**
 * One stream of one job: bytes at absolute offsets [0, end). The first
 * `memoryBytes` live in memory; beyond that the log spills to a file and
 * appends there. Appends are synchronous writes to a local file: the runner's
 * sink has no back-pressure, and a blocking append is what keeps the server's
 * memory bounded when a child writes faster than anyone reads. Readers read at
 * their own pace (`read`) or subscribe (`subscribe`); neither slows the writer.
 */
export class OutputLog implements LogSource {
  private chunks: Buffer[] = [];
  private starts: number[] = [];
  /**
   * Once spilled, the last chunks written (at most memoryBytes, as before the spill; none once closed): a
   * viewer a little behind the writer (its send buffer drained meanwhile) takes them from here, the very
   * Buffers, instead of reading the file into new ones.
   */
  private tail: Buffer[] = [];
  private tailStarts: number[] = [];
  private tailBytes = 0;
  private fd: number | null = null;
  private spilled = false;
  private fileCreated = false;
  private removed = false;
  private cap: number;
  private length = 0;
  private droppedBytes = 0;
  private dropReason: TruncatedReason | null = null;
  /** Why the file could not be written: every byte dropped from then on is for this reason. */
  private writeFailure: TruncatedReason | null = null;
  /** Device and inode of the file this log created: a read opens that file or none. */
  private fileId: { dev: number; ino: number } | null = null;
  private isClosed = false;
  private readonly subs = new Set<LogSubscription>();

  constructor(private readonly options: OutputLogOptions) {
    this.cap = options.maxBytes;
  }

  /** Offset after the last kept byte: how many bytes a reader can get. */
  get end(): number {
    return this.length;
  }

  /** Bytes produced past the cap and dropped. */
  get dropped(): number {
    return this.droppedBytes;
  }

  get truncated(): boolean {
    return this.droppedBytes > 0;
  }

  /** Why bytes were dropped (the first reason), or null. */
  get truncatedReason(): TruncatedReason | null {
    return this.dropReason;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Readers subscribed now. */
  get subscribers(): number {
    return this.subs.size;
  }

  /** Count bytes another writer dropped past its cap (this log mirrors one kept elsewhere). */
  noteDropped(bytes: number): void {
    if (!this.isClosed && bytes > 0) this.drop(bytes, 'max_output');
  }

  /** True once the bytes live in the file rather than in memory. */
  get onDisk(): boolean {
    return this.spilled;
  }

  append(chunk: Buffer): void {
    if (this.isClosed || chunk.length === 0) return;
    const room = this.cap - this.length;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, Math.max(0, room));
    if (part.length < chunk.length) this.drop(chunk.length - part.length, this.writeFailure ?? 'max_output');
    if (part.length === 0) return;
    const offset = this.length;
    if (!this.spilled && offset + part.length > this.options.memoryBytes && !this.spill()) {
      this.drop(part.length, this.writeFailure ?? 'write_failed');
      return;
    }
    if (this.spilled) {
      const written = this.writeFile(part, offset);
      if (written < part.length) {
        // The file took the first `written` bytes before it failed (a full disk mid-chunk): those are kept, the rest dropped.
        this.drop(part.length - written, this.writeFailure ?? 'write_failed');
        if (written === 0) return;
        const kept = part.subarray(0, written);
        this.keepTail(kept, offset);
        this.length += written;
        this.cap = this.length;
        for (const sub of this.subs) sub.onAppend(offset, kept);
        return;
      }
      this.keepTail(part, offset);
    } else {
      this.chunks.push(part);
      this.starts.push(offset);
    }
    this.length += part.length;
    for (const sub of this.subs) sub.onAppend(offset, part);
  }

  /** Up to `length` bytes from `offset` (fewer at the end). RangeError past the end. */
  async read(offset: number, length: number): Promise<Buffer> {
    const reader = this.openReader();
    try {
      return await reader.read(offset, length, 0);
    } finally {
      reader.close();
    }
  }

  /**
   * A reader for a run of reads (a subscription catching up): the file, once
   * needed, is opened once (the file this log created, as `openFile` checks)
   * and read at positions until `close()`, instead of an open, a stat and a
   * close per read.
   */
  openReader(): LogReader {
    let file: Promise<FileHandle> | null = null;
    const read = async (offset: number, length: number, headroom: number, into?: Buffer): Promise<Buffer> => {
      if (this.removed) throw new OutputRemovedError();
      if (offset > this.length) throw new RangeError(`offset ${offset} is past the end (${this.length})`);
      const n = Math.max(0, Math.min(length, this.length - offset));
      if (!this.spilled) {
        const data = this.readMemory(offset, n);
        if (headroom === 0) return data;
        const room = Buffer.allocUnsafe(headroom + data.length);
        data.copy(room, headroom);
        return room;
      }
      if (file === null) {
        file = this.openFile();
        file.catch(() => (file = null)); // the next read tries again (and fails as it should)
      }
      try {
        return await readHandleRange(await file, offset, n, headroom, into);
      } catch (err) {
        if (this.removed) throw new OutputRemovedError(); // deleted while the file was being opened
        throw err;
      }
    };
    // Bytes held in memory (before the spill, or the tail after it): the log's own Buffer, no copy, no read.
    const peek = (offset: number, length: number): Buffer | null => {
      if (this.removed || offset >= this.length || length <= 0) return null;
      return this.spilled ? peekChunks(this.tail, this.tailStarts, offset, length) : peekChunks(this.chunks, this.starts, offset, length);
    };
    const close = () => {
      // A FileHandle closes once the reads in flight on it are done.
      file?.then((fh) => fh.close()).catch(() => {});
      file = null;
    };
    return { read, peek, close };
  }

  /** The bytes kept now, readable whatever happens to the log later; OutputRemovedError once it is removed. */
  async snapshot(): Promise<OutputSnapshot> {
    if (this.removed) throw new OutputRemovedError();
    const end = this.length;
    if (!this.spilled) {
      // spill() and dispose() replace these arrays rather than empty them: the ones held here stay whole.
      const { chunks, starts } = this;
      const read = async (offset: number, length: number) => readChunks(chunks, starts, offset, Math.min(length, end - offset));
      return { end, read, close: async () => {} };
    }
    let fh: FileHandle;
    try {
      fh = await this.openFile();
    } catch (err) {
      if (this.removed) throw new OutputRemovedError(); // deleted while the file was being opened
      throw err;
    }
    let closed: Promise<void> | null = null;
    return {
      end,
      read: (offset, length) => readHandleRange(fh, offset, Math.min(length, end - offset), 0),
      close: () => (closed ??= fh.close()),
    };
  }

  /** Deliver bytes from `from` on, then live ones; see LogSubscription. */
  subscribe(from: number, listener: LogListener, options?: SubscribeOptions): LogSubscription {
    const sub = new LogSubscription(this, from, listener, () => this.subs.delete(sub), options);
    if (this.removed) queueMicrotask(() => sub.onRemoved());
    else this.subs.add(sub);
    return sub;
  }

  /** No more bytes: readers get `end` once they have read everything. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.dropTail();
    if (!this.spilled && this.length > FINISHED_MEMORY_BYTES) this.spill();
    this.closeFd();
    for (const sub of [...this.subs]) sub.onClose();
  }

  /** Close, forget the bytes and delete the file. */
  dispose(): void {
    this.close();
    this.removed = true;
    for (const sub of [...this.subs]) sub.onRemoved();
    this.chunks = [];
    this.starts = [];
    this.dropTail();
    if (this.fileCreated) rmSync(this.options.file, { force: true });
  }

  /** The file this log created, opened for reading: not through a symlink, and not another file put in its place. */
  private async openFile(): Promise<FileHandle> {
    const fh = await open(this.options.file, READ_FLAGS);
    const st = await fh.stat().catch(async (err: unknown) => {
      await fh.close();
      throw err;
    });
    if (this.fileId === null || st.dev !== this.fileId.dev || st.ino !== this.fileId.ino) {
      await fh.close();
      throw Object.assign(new Error('the output file was replaced; it is not read'), { code: 'ESTALE' });
    }
    return fh;
  }

  private keepTail(part: Buffer, offset: number): void {
    const max = this.options.memoryBytes;
    if (part.length > max) return this.dropTail();
    this.tail.push(part);
    this.tailStarts.push(offset);
    this.tailBytes += part.length;
    let gone = 0;
    while (this.tailBytes > max) this.tailBytes -= this.tail[gone++]!.length;
    if (gone > 0) {
      // New arrays (never spliced): a peek's result is a subarray, nothing it returned changes.
      this.tail = this.tail.slice(gone);
      this.tailStarts = this.tailStarts.slice(gone);
    }
  }

  private dropTail(): void {
    this.tail = [];
    this.tailStarts = [];
    this.tailBytes = 0;
  }

  private drop(bytes: number, reason: TruncatedReason): void {
    this.droppedBytes += bytes;
    this.dropReason ??= reason;
  }

  private readMemory(offset: number, n: number): Buffer {
    return readChunks(this.chunks, this.starts, offset, n);
  }

  /** Move the memory part to the file; false (and the cap lowered to what is kept) when that fails. */
  private spill(): boolean {
    if (this.writeFailure !== null) return false; // failed once: the file stays as it was, the rest stays in memory
    try {
      // The directory exists since the start (ops/data-dir.ts); a log never makes one.
      this.fd = openSync(this.options.file, CREATE_FLAGS, 0o600);
      this.fileCreated = true;
      const st = fstatSync(this.fd);
      this.fileId = { dev: st.dev, ino: st.ino };
      this.spilled = true;
      for (let i = 0; i < this.chunks.length; i++) {
        if (this.writeFile(this.chunks[i]!, this.starts[i]!) < this.chunks[i]!.length) return false;
      }
      this.chunks = [];
      this.starts = [];
      return true;
    } catch (err) {
      this.fail(err as Error);
      return false;
    }
  }

  /** Write `data` at `position`: how many bytes the file took (all of them, or fewer when a write failed). */
  private writeFile(data: Buffer, position: number): number {
    let done = 0;
    try {
      while (done < data.length) done += writeSync(this.fd!, data, done, data.length - done, position + done);
    } catch (err) {
      this.fail(err as Error);
    }
    return done;
  }

  private fail(err: Error): void {
    this.writeFailure ??= writeFailureReason(err);
    if (this.spilled && this.chunks.length > 0) {
      // The memory part could not be copied out: keep serving it from memory.
      this.spilled = false;
    }
    this.cap = this.length;
    this.closeFd();
    this.options.onError?.(err);
  }

  private closeFd(): void {
    if (this.fd === null) return;
    try {
      closeSync(this.fd);
    } catch {
      // already closed
    }
    this.fd = null;
  }
}

/** The index of the last chunk starting at or before `offset` (binary search; `starts` ascending, not empty). */
function chunkAt(starts: number[], offset: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** `n` bytes from `offset` of in-memory chunks that start at `starts`. */
function readChunks(chunks: Buffer[], starts: number[], offset: number, n: number): Buffer {
  if (n <= 0) return EMPTY;
  const lo = chunkAt(starts, offset);
  const parts: Buffer[] = [];
  let at = offset;
  for (let i = lo; at < offset + n; i++) {
    const chunk = chunks[i]!;
    const from = at - starts[i]!;
    const part = chunk.subarray(from, Math.min(chunk.length, from + offset + n - at));
    parts.push(part);
    at += part.length;
  }
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts, n);
}

/** Up to `n` bytes from `offset` within the one in-memory chunk holding `offset` (a subarray), or null when none does. */
function peekChunks(chunks: Buffer[], starts: number[], offset: number, n: number): Buffer | null {
  if (chunks.length === 0 || offset < starts[0]!) return null;
  const lo = chunkAt(starts, offset);
  const chunk = chunks[lo]!;
  const from = offset - starts[lo]!;
  if (from >= chunk.length) return null;
  return chunk.subarray(from, Math.min(chunk.length, from + n));
}

/** `n` bytes from `offset` of a file, after `headroom` free bytes (see LogReader.read), in `into` when it is large enough. */
async function readHandleRange(fh: FileHandle, offset: number, n: number, headroom: number, into?: Buffer): Promise<Buffer> {
  if (n <= 0) return headroom === 0 ? EMPTY : Buffer.allocUnsafe(headroom);
  const buf = into !== undefined && into.length >= headroom + n ? into.subarray(0, headroom + n) : Buffer.allocUnsafe(headroom + n);
  let got = 0;
  while (got < n) {
    const { bytesRead } = await fh.read(buf, headroom + got, n - got, offset + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === n ? buf : buf.subarray(0, headroom + got);
}
