/**
 * Between a fast stream and a slow renderer: bytes are queued and written a bounded batch at a time, one
 * write in flight, each in a task of its own after the previous one was parsed, so that input events get
 * the main thread between batches. A view that falls further behind
 * than `maxPending` drops its oldest queued bytes (counted in `skipped`, announced by a marker line): the
 * page stays responsive and its memory bounded, and the download still has every byte. No DOM here.
 */
export class WriteQueue {
  private chunks: Uint8Array[] = [];
  private head = 0;
  pending = 0;
  skipped = 0;
  private unannounced = 0;
  /** A write is with the renderer (not yet parsed). */
  busy = false;
  private scheduled = false;

  constructor(
    private readonly write: (data: Uint8Array, done: () => void) => void,
    private readonly schedule: (cb: () => void) => void,
    private readonly batchBytes = 32 * 1024,
    private readonly maxPending = 8 * 1024 * 1024,
    private readonly announce: (skipped: number) => Uint8Array = (n) =>
      new TextEncoder().encode(`\x1b[0m\r\n\x1b[7m ${n} bytes not drawn here (the view fell behind); Download has every byte \x1b[0m\r\n`),
  ) {}

  push(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.chunks.push(bytes);
    this.pending += bytes.length;
    while (this.pending > this.maxPending && this.head < this.chunks.length - 1) {
      const dropped = this.chunks[this.head]!;
      this.chunks[this.head++] = EMPTY;
      this.pending -= dropped.length;
      this.skipped += dropped.length;
      this.unannounced += dropped.length;
    }
    this.kick();
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.pending = 0;
    this.unannounced = 0;
  }

  private kick(): void {
    if (this.busy || this.scheduled || this.pending === 0) return;
    this.scheduled = true;
    this.schedule(() => {
      this.scheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.busy || this.pending === 0) return;
    const parts: Uint8Array[] = [];
    let size = 0;
    if (this.unannounced > 0) {
      parts.push(this.announce(this.unannounced));
      size += parts[0]!.length;
      this.unannounced = 0;
    }
    while (this.head < this.chunks.length && size < this.batchBytes) {
      let chunk = this.chunks[this.head]!;
      if (size + chunk.length > this.batchBytes) {
        const room = this.batchBytes - size;
        this.chunks[this.head] = chunk.subarray(room);
        chunk = chunk.subarray(0, room);
      } else {
        this.chunks[this.head++] = EMPTY;
      }
      parts.push(chunk);
      size += chunk.length;
      this.pending -= chunk.length;
    }
    if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
    this.busy = true;
    this.write(concat(parts, size), () => {
      this.busy = false;
      this.kick();
    });
  }
}

const EMPTY = new Uint8Array(0);

function concat(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The last `maxBytes` of output, per chunk with its stream, to redraw the view when it switches stream. */
export class ChunkHistory {
  private items: [string, Uint8Array][] = [];
  private head = 0;
  private size = 0;

  constructor(private readonly maxBytes: number) {}

  push(stream: string, bytes: Uint8Array): void {
    this.items.push([stream, bytes]);
    this.size += bytes.length;
    while (this.size > this.maxBytes && this.head < this.items.length - 1) {
      this.size -= this.items[this.head]![1].length;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  entries(): [string, Uint8Array][] {
    return this.items.slice(this.head);
  }
}
