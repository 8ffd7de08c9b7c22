/**
 * A bounded FIFO over a power-of-two ring buffer: push, shift and remove are
 * O(1) (amortized), never an Array.shift() over a long array.
 *
 * Each pushed item gets a ticket, an absolute and increasing slot number.
 * `remove(ticket)` leaves a hole that `shift` skips (lazy deletion); holes at
 * the head are dropped at once, and when holes outnumber the live items the
 * ring is compacted, which hands out new (still increasing) tickets through
 * `onMove`. `capacity` bounds the live items only.
 */
export class Fifo<T> {
  private buf: (T | undefined)[];
  private mask: number;
  private head = 0;
  private tail = 0;
  private live = 0;
  private holes = 0;

  constructor(
    readonly capacity = Number.POSITIVE_INFINITY,
    private readonly onMove?: (item: T, ticket: number) => void,
    initialSize = 16,
  ) {
    const size = 2 ** Math.ceil(Math.log2(Math.max(2, initialSize)));
    this.buf = new Array<T | undefined>(size).fill(undefined);
    this.mask = size - 1;
  }

  get size(): number {
    return this.live;
  }

  get full(): boolean {
    return this.live >= this.capacity;
  }

  /** Append; returns the item's ticket. Throws RangeError when full (check `full` first). */
  push(item: T): number {
    if (this.full) throw new RangeError(`fifo is full (${this.capacity})`);
    if (this.tail - this.head === this.buf.length) this.resize(this.buf.length * 2);
    const ticket = this.tail++;
    this.buf[ticket & this.mask] = item;
    this.live++;
    return ticket;
  }

  /** Take the oldest live item. */
  shift(): T | undefined {
    this.dropHeadHoles();
    if (this.head === this.tail) return undefined;
    const i = this.head & this.mask;
    const item = this.buf[i]!;
    this.buf[i] = undefined;
    this.head++;
    this.live--;
    this.dropHeadHoles();
    this.maybeShrink();
    return item;
  }

  peek(): T | undefined {
    this.dropHeadHoles();
    return this.head === this.tail ? undefined : this.buf[this.head & this.mask];
  }

  /** Remove the item holding `ticket`; returns it, or undefined when it is not (or no longer) here. */
  remove(ticket: number): T | undefined {
    if (!Number.isInteger(ticket) || ticket < this.head || ticket >= this.tail) return undefined;
    const i = ticket & this.mask;
    const item = this.buf[i];
    if (item === undefined) return undefined;
    this.buf[i] = undefined;
    this.live--;
    this.holes++;
    this.dropHeadHoles();
    if (this.holes > 64 && this.holes > this.live) this.compact();
    return item;
  }

  /** How many live items are ahead of `ticket` (0 = next out); undefined when it is not here. */
  positionOf(ticket: number): number | undefined {
    if (ticket < this.head || ticket >= this.tail || this.buf[ticket & this.mask] === undefined) return undefined;
    if (this.holes === 0) return ticket - this.head;
    let ahead = 0;
    for (let t = this.head; t < ticket; t++) if (this.buf[t & this.mask] !== undefined) ahead++;
    return ahead;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let t = this.head; t < this.tail; t++) {
      const item = this.buf[t & this.mask];
      if (item !== undefined) yield item;
    }
  }

  /** Remove and return every live item, oldest first. */
  drain(): T[] {
    const out = [...this];
    this.buf = new Array<T | undefined>(16).fill(undefined);
    this.mask = 15;
    this.head = this.tail;
    this.live = this.holes = 0;
    return out;
  }

  private dropHeadHoles(): void {
    while (this.holes > 0 && this.head < this.tail && this.buf[this.head & this.mask] === undefined) {
      this.head++;
      this.holes--;
    }
  }

  private maybeShrink(): void {
    const size = this.buf.length;
    if (size > 1024 && this.tail - this.head < size / 4) this.resize(size / 2);
  }

  /** Copy the span into a ring of `size` slots; tickets keep their numbers. */
  private resize(size: number): void {
    const next = new Array<T | undefined>(size).fill(undefined);
    const mask = size - 1;
    for (let t = this.head; t < this.tail; t++) next[t & mask] = this.buf[t & this.mask];
    this.buf = next;
    this.mask = mask;
  }

  /** Squeeze the holes out; live items get new tickets starting at the old tail. */
  private compact(): void {
    const items = [...this];
    let size = 16;
    while (size < items.length * 2) size *= 2;
    this.buf = new Array<T | undefined>(size).fill(undefined);
    this.mask = size - 1;
    this.head = this.tail;
    this.holes = 0;
    for (const item of items) {
      const ticket = this.tail++;
      this.buf[ticket & this.mask] = item;
      this.onMove?.(item, ticket);
    }
  }
}
