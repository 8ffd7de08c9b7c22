import type { FastifyBaseLogger } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import type { JobQueue } from '../queue/index.js';
import { errorFrame } from './frames.js';
import { Outbox, type SendBudget } from './outbox.js';

/** Invalid client frames tolerated on one connection; beyond, close 1008. */
export const MAX_INVALID_FRAMES = 32;

/** What every viewer gets from the hub. */
export interface ViewerContext {
  jobs: JobQueue;
  budget: SendBudget;
  /** EXECD_WS_MAX_BUFFER_BYTES. */
  maxBufferBytes: number;
  log: FastifyBaseLogger;
  /** Audit lines (signals sent over a WebSocket). */
  audit: FastifyBaseLogger;
  /** Called once when the viewer's socket has closed. */
  release(viewer: Viewer): void;
}

/**
 * One WebSocket client: a bounded send buffer (Outbox), liveness for the
 * heartbeat, and cleanup exactly once when the socket closes, however it closes.
 */
export abstract class Viewer {
  readonly outbox: Outbox;
  /** A pong or a message came since the heartbeat last looked. */
  private alive = true;
  /** The viewer stopped reading its socket (stdin back-pressure): pongs cannot arrive meanwhile. */
  protected readingPaused = false;
  private released = false;

  constructor(
    readonly ws: WebSocket,
    protected readonly ctx: ViewerContext,
  ) {
    this.outbox = new Outbox(ws, ctx.maxBufferBytes, ctx.budget, () => this.onDrain());
    ws.on('pong', () => {
      this.alive = true;
    });
    ws.on('message', (data, isBinary) => {
      this.alive = true;
      this.onMessage(data, isBinary);
    });
    ws.once('close', () => this.release());
  }

  /**
   * One heartbeat: false when the viewer showed no sign of life for a whole
   * interval (no pong, no message, none of its frames taken by the kernel),
   * and it is then terminated; else a new ping goes out.
   */
  heartbeat(): boolean {
    const lively = this.alive || this.outbox.progressed || this.readingPaused;
    this.alive = false;
    this.outbox.progressed = false;
    if (!lively) {
      this.ws.terminate();
      return false;
    }
    this.ws.ping();
    return true;
  }

  /** Close with `code` (a `reason` of at most 123 bytes). */
  close(code: number, reason = ''): void {
    this.ws.close(code, reason);
  }

  protected sendError(code: string, detail: string): void {
    this.outbox.send(errorFrame(code, detail));
  }

  protected abstract onMessage(data: RawData, isBinary: boolean): void;
  protected abstract onDrain(): void;
  protected abstract dispose(): void;

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.outbox.dispose();
    this.dispose();
    this.ctx.release(this);
  }
}
