import type { FastifyBaseLogger } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import type { JobQueue } from '../queue/index.js';
import { hasScope, type Principal } from '../security/auth.js';
import { errorFrame } from './frames.js';
import { Outbox, type SendBudget } from './outbox.js';

/** Invalid client frames tolerated on one connection; beyond, close 1008. */
export const MAX_INVALID_FRAMES = 32;
/** A viewer closed for its token (1008) that does not answer the close within this long is cut. */
const REVOKED_CLOSE_GRACE_MS = 1000;

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
  /** The token as the last reload left it (its scopes now); null once it was revoked. */
  private principalNow: Principal | null;

  constructor(
    readonly ws: WebSocket,
    protected readonly ctx: ViewerContext,
    principal: Principal,
  ) {
    this.principalNow = principal;
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

  /** The token this viewer was opened with, as it is in force now; null once it was revoked. */
  get principal(): Principal | null {
    return this.principalNow;
  }

  /**
   * After a tokens reload: `current` is what the token holds now (null: it was removed). A removed token,
   * or one that lost jobs:read, closes the viewer with 1008 (an error frame says why first); a narrower
   * token keeps watching with its new scopes, checked on every client frame.
   */
  revalidate(current: Principal | null): void {
    const was = this.principalNow;
    if (was === null || current === was) return;
    if (current === null) return this.revoke('UNAUTHORIZED', `token ${JSON.stringify(was.id)} was revoked (removed from EXECD_TOKENS_FILE)`, 'token revoked');
    if (!hasScope(current, 'jobs:read')) {
      return this.revoke('FORBIDDEN', `token ${JSON.stringify(was.id)} no longer holds the scope "jobs:read" (EXECD_TOKENS_FILE reloaded)`, 'token lost the scope jobs:read');
    }
    this.principalNow = current;
    this.onPrincipalChanged(current);
  }

  /** The token may no longer watch: say why, close 1008, cut the socket if the close is not answered. */
  protected revoke(code: string, detail: string, reason: string): void {
    const tokenId = this.principalNow?.id ?? null;
    this.principalNow = null;
    this.ctx.audit.info({ event: 'token.revoked', via: 'websocket', tokenId, ...this.watching, reason }, 'token.revoked');
    this.sendError(code, detail);
    this.close(1008, reason);
    // A viewer that stopped reading its socket (stdin back-pressure) would not see the client's close frame.
    setTimeout(() => this.ws.terminate(), REVOKED_CLOSE_GRACE_MS).unref();
  }

  /** What the viewer watches, for its audit lines. */
  protected get watching(): Record<string, unknown> {
    return {};
  }

  /** The token's scopes changed (still in force, still jobs:read). */
  protected onPrincipalChanged(_principal: Principal): void {}

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
