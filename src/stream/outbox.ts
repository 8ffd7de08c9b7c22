import { WebSocket } from 'ws';

/** What all viewers of one server hold in their send buffers together. */
export class SendBudget {
  total = 0;
  constructor(readonly limit: number) {}

  get exceeded(): boolean {
    return this.total > this.limit;
  }
}

/** The part of ws's Sender (ws 8) sendParts uses: its state (0: not compressing, nothing queued) and its last step. */
interface RawSender {
  _state?: number;
  sendFrame?(list: Buffer[], cb?: (err?: Error | null) => void): void;
}
const SENDER_IDLE = 0;

/** The header of one unmasked final binary WebSocket frame (RFC 6455 5.2) of `length` payload bytes, followed by `head`. */
export function binaryFrameHeader(head: Buffer, length: number): Buffer {
  const size = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(size + head.length);
  out[0] = 0x82; // FIN, opcode 2 (binary)
  if (size === 2) {
    out[1] = length;
  } else if (size === 4) {
    out[1] = 126;
    out.writeUInt16BE(length, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(length / 0x1_0000_0000), 2);
    out.writeUInt32BE(length >>> 0, 6);
  }
  head.copy(out, size);
  return out;
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

  /**
   * Send one frame: text (JSON), or binary; dropped once the socket is closing. `written` runs once the kernel took
   * the frame (no error): its buffer is free again.
   */
  send(frame: string | Buffer, binary = false, written?: () => void): void {
    if (!this.open) return;
    const data = typeof frame === 'string' ? Buffer.from(frame) : frame;
    const n = data.length;
    this.pending += n;
    this.budget.total += n;
    this.ws.send(data, { binary }, (err) => {
      this.sent(n);
      if (!err && written) written();
    });
  }

  /**
   * Send one binary frame made of `head` then `bytes`, without copying `bytes` into a new buffer: ws writes
   * a frame from its own header and one buffer, so the frame header and `head` go as that header
   * (ws's Sender.sendFrame, the step WebSocket#send ends in). Where that step is not there as expected
   * (another ws version), the two are joined and sent the documented way.
   */
  sendParts(head: Buffer, bytes: Buffer): void {
    if (!this.open) return;
    const n = head.length + bytes.length;
    this.pending += n;
    this.budget.total += n;
    const done = () => this.sent(n);
    const sender = (this.ws as unknown as { _sender?: RawSender })._sender;
    if (sender?._state === SENDER_IDLE && typeof sender.sendFrame === 'function') {
      sender.sendFrame([binaryFrameHeader(head, n), bytes], done);
    } else {
      this.ws.send(Buffer.concat([head, bytes], n), { binary: true }, done);
    }
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
