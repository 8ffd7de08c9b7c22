import { WebSocket } from 'ws';

/** What all viewers of one server hold in their send buffers together. */
export class SendBudget {
  total = 0;
  constructor(readonly limit: number) {}

  get exceeded(): boolean {
    return this.total > this.limit;
  }
}

/** While the budget is exceeded, a viewer holding more than this is slow too. */
export const FAIR_SHARE_BYTES = 64 * 1024;

/**
 * One viewer's send buffer, counted exactly: a frame's bytes count from
 * ws.send until its write callback (the kernel took it). The viewer asks
 * `overloaded` after each send and stops producing; `onDrain` fires once the
 * buffer is back to a quarter of its bound, when the viewer may go on.
 */
export class Outbox {
  private pending = 0;
  private waiting = false;
  private closed = false;
  /** A write completed since the heartbeat last looked: the peer is reading. */
  progressed = false;

  constructor(
    private readonly ws: WebSocket,
    private readonly maxBytes: number,
    private readonly budget: SendBudget,
    private readonly onDrain: () => void,
  ) {}

  get bufferedBytes(): number {
    return this.pending;
  }

  get open(): boolean {
    return !this.closed && this.ws.readyState === WebSocket.OPEN;
  }

  /** Past the viewer's bound, or past its fair share while all viewers together are past theirs. */
  get overloaded(): boolean {
    return this.pending > this.maxBytes || (this.budget.exceeded && this.pending > FAIR_SHARE_BYTES);
  }

  /** Send one frame: text (JSON), or binary; dropped once the socket is closing. */
  send(frame: string | Buffer, binary = false): void {
    if (!this.open) return;
    const data = typeof frame === 'string' ? Buffer.from(frame) : frame;
    const n = data.length;
    this.pending += n;
    this.budget.total += n;
    this.ws.send(data, { binary }, () => this.sent(n));
  }

  /** Call `onDrain` once the buffer has drained (now, if it has). */
  waitForDrain(): void {
    this.waiting = true;
    if (this.drained()) this.fireDrain();
  }

  /** The socket is gone: give the budget back now (late callbacks are ignored). */
  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.budget.total -= this.pending;
    this.pending = 0;
  }

  private sent(n: number): void {
    if (this.closed) return;
    this.pending -= n;
    this.budget.total -= n;
    this.progressed = true;
    if (this.waiting && this.drained()) this.fireDrain();
  }

  private drained(): boolean {
    return this.pending <= (this.budget.exceeded ? Math.min(FAIR_SHARE_BYTES / 2, this.maxBytes / 4) : this.maxBytes / 4);
  }

  private fireDrain(): void {
    this.waiting = false;
    this.onDrain();
  }
}
