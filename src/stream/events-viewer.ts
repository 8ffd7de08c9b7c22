import type { RawData, WebSocket } from 'ws';
import type { Job } from '../schemas/jobs.js';
import type { LaggedFrame } from '../schemas/stream.js';
import type { Principal } from '../security/auth.js';
import { streamMetrics } from './metrics.js';
import { MAX_INVALID_FRAMES, Viewer, type ViewerContext } from './viewer.js';

/**
 * A viewer of GET /v1/events: every job's lifecycle events. One too slow for
 * them has events dropped (never buffered past its bound) and, once its
 * buffer drains, a `lagged` frame that counts them.
 */
export class EventsViewer extends Viewer {
  private dropped = 0;
  private lagging = false;
  private invalidFrames = 0;

  /**
   * `principal`: the token; it gets the events of the jobs it can see (canSee, with its scopes as the last reload
   * left them), and no others.
   */
  constructor(
    ws: WebSocket,
    ctx: ViewerContext,
    principal: Principal,
    /** ?label=k=v: only the events of jobs with all of these labels. */
    private readonly labels: readonly (readonly [string, string])[] = [],
  ) {
    super(ws, ctx, principal);
  }

  wants(job: Job): boolean {
    return this.labels.every(([k, v]) => Object.hasOwn(job.labels ?? {}, k) && job.labels[k] === v);
  }

  /** One event, already serialized (the hub encodes each event once for all viewers). */
  deliver(frame: Buffer): void {
    if (this.lagging) {
      this.dropped++;
      streamMetrics.eventsDroppedTotal++;
      return;
    }
    this.outbox.send(frame);
    if (this.outbox.overloaded) {
      this.lagging = true;
      this.outbox.waitForDrain();
    }
  }

  protected onDrain(): void {
    if (!this.lagging) return;
    this.lagging = false;
    const frame: LaggedFrame = { type: 'lagged', dropped: this.dropped };
    this.dropped = 0;
    if (frame.dropped > 0) this.outbox.send(JSON.stringify(frame));
  }

  protected onMessage(_data: RawData, _isBinary: boolean): void {
    streamMetrics.refusedFramesTotal++;
    this.sendError('VALIDATION_FAILED', 'GET /v1/events takes no frames from the client');
    if (++this.invalidFrames > MAX_INVALID_FRAMES) this.close(1008, 'too many invalid frames');
  }

  protected dispose(): void {}
}
