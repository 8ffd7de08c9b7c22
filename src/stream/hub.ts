import fastifyWebsocket from '@fastify/websocket';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import type { Config } from '../config.js';
import type { JobQueue } from '../queue/index.js';
import type { JobEventName } from '../queue/types.js';
import type { Job } from '../schemas/jobs.js';
import type { JobEventFrame } from '../schemas/stream.js';
import { canSee, type Principal } from '../security/auth.js';
import { EventsViewer } from './events-viewer.js';
import { JobViewer, type JobViewerOptions } from './job-viewer.js';
import { streamMetrics } from './metrics.js';
import { SendBudget } from './outbox.js';
import type { Viewer, ViewerContext } from './viewer.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The WebSocket viewers of job output and of job events. */
    viewers: ViewerHub;
  }
}

/** Largest frame a client may send (stdin data included); bigger ones close the connection with 1009. */
export const MAX_CLIENT_FRAME_BYTES = 64 * 1024;
/** On shutdown, viewers get close 1001 and this long to answer it before they are cut. */
const CLOSE_GRACE_MS = 1000;

const EVENTS: readonly JobEventName[] = ['queued', 'started', 'finished'];

/**
 * Every WebSocket viewer of one server: who watches which job, the queue's
 * lifecycle events fanned out to them (each event serialized once), the
 * shared send budget, the heartbeat, and closing them all on shutdown.
 */
export class ViewerHub {
  private readonly byJob = new Map<string, Set<JobViewer>>();
  private readonly eventViewers = new Set<EventsViewer>();
  private readonly all = new Set<Viewer>();
  private readonly ctx: ViewerContext;
  private readonly listeners = EVENTS.map(
    (name) => [name, (job: Job, ownerId: string | null) => this.dispatch(name, job, ownerId)] as const,
  );
  private listening = false;
  private timer: NodeJS.Timeout | null = null;
  private closing = false;
  private onEmpty: (() => void) | null = null;

  constructor(
    private readonly jobs: JobQueue,
    private readonly config: Pick<Config, 'wsTotalBufferBytes' | 'wsMaxBufferBytes' | 'wsPingMs'>,
    log: FastifyBaseLogger,
    audit: FastifyBaseLogger,
  ) {
    this.ctx = {
      jobs,
      budget: new SendBudget(config.wsTotalBufferBytes),
      maxBufferBytes: config.wsMaxBufferBytes,
      log,
      audit,
      release: (viewer) => this.release(viewer),
    };
  }

  /** Open viewers of job output. */
  get jobViewerCount(): number {
    let n = 0;
    for (const set of this.byJob.values()) n += set.size;
    return n;
  }

  get eventViewerCount(): number {
    return this.eventViewers.size;
  }

  /** Bytes all viewers hold in their send buffers now. */
  get bufferedBytes(): number {
    return this.ctx.budget.total;
  }

  /** A new viewer of one job's output (the route checked the token, the origin and the job). */
  openJobViewer(ws: WebSocket, options: JobViewerOptions): void {
    if (this.refuseWhileClosing(ws)) return;
    const viewer = new JobViewer(ws, this.ctx, options);
    let set = this.byJob.get(options.jobId);
    if (!set) this.byJob.set(options.jobId, (set = new Set()));
    set.add(viewer);
    streamMetrics.jobViewers++;
    this.add(viewer);
    viewer.start().catch((err: unknown) => {
      this.ctx.log.error({ err, jobId: options.jobId }, 'job viewer failed to start');
      viewer.close(1011, 'internal error');
    });
  }

  /** A new viewer of the lifecycle events of the jobs `principal` can see (its own; every job with admin). */
  openEventsViewer(ws: WebSocket, principal: Principal, labels: readonly (readonly [string, string])[] = []): void {
    if (this.refuseWhileClosing(ws)) return;
    const viewer = new EventsViewer(ws, this.ctx, principal, labels);
    this.eventViewers.add(viewer);
    streamMetrics.eventViewers++;
    this.add(viewer);
  }

  /**
   * After a tokens reload (SIGHUP): each viewer learns what its token holds now (`current`: null when it
   * was removed). A revoked token's viewers close with 1008; a lost scope is refused on the next frame.
   */
  revalidate(current: (principal: Principal) => Principal | null): void {
    for (const viewer of this.all) {
      const principal = viewer.principal;
      if (principal !== null) viewer.revalidate(current(principal));
    }
  }

  /** Shutdown (preClose): close every viewer with 1001, cut those that do not answer within a second. */
  async closeAll(): Promise<void> {
    this.closing = true;
    if (this.all.size === 0) return;
    const empty = new Promise<void>((resolve) => (this.onEmpty = resolve));
    for (const viewer of this.all) viewer.close(1001, 'server shutting down');
    const cut = setTimeout(() => {
      for (const viewer of this.all) viewer.ws.terminate();
    }, CLOSE_GRACE_MS);
    await empty;
    clearTimeout(cut);
  }

  private refuseWhileClosing(ws: WebSocket): boolean {
    if (this.closing) ws.close(1001, 'server shutting down');
    return this.closing;
  }

  private add(viewer: Viewer): void {
    this.all.add(viewer);
    streamMetrics.viewersOpenedTotal++;
    if (!this.listening) {
      this.listening = true;
      for (const [name, fn] of this.listeners) this.jobs.events.on(name, fn);
    }
    this.timer ??= setInterval(() => this.heartbeat(), this.config.wsPingMs).unref();
  }

  private release(viewer: Viewer): void {
    if (!this.all.delete(viewer)) return;
    if (viewer instanceof JobViewer) {
      const set = this.byJob.get(viewer.jobId);
      set?.delete(viewer);
      if (set?.size === 0) this.byJob.delete(viewer.jobId);
      streamMetrics.jobViewers--;
    } else if (viewer instanceof EventsViewer) {
      this.eventViewers.delete(viewer);
      streamMetrics.eventViewers--;
    }
    if (this.all.size > 0) return;
    // Nobody watches: the queue stops building event views, the heartbeat stops.
    if (this.listening) {
      this.listening = false;
      for (const [name, fn] of this.listeners) this.jobs.events.off(name, fn);
    }
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.onEmpty?.();
  }

  private dispatch(name: JobEventName, job: Job, ownerId: string | null): void {
    const viewers = this.byJob.get(job.id);
    if (viewers) for (const viewer of viewers) viewer.onJobEvent(job);
    if (this.eventViewers.size === 0) return;
    let bytes: Buffer | undefined;
    for (const viewer of this.eventViewers) {
      const principal = viewer.principal; // null: revoked, closing
      if (principal === null || !canSee(principal, ownerId)) continue; // another token's job: not even its id
      if (!viewer.wants(job)) continue; // its label filter
      if (!bytes) {
        const frame: JobEventFrame = { type: name, job };
        bytes = Buffer.from(JSON.stringify(frame));
      }
      viewer.deliver(bytes);
    }
  }

  private heartbeat(): void {
    for (const viewer of this.all) if (!viewer.heartbeat()) streamMetrics.deadViewersTotal++;
  }
}

/** The subprotocol a browser sends its token in (`bearer.<token>`), echoed as the accepted one. */
export function bearerProtocol(protocols: Set<string>): string | false {
  for (const p of protocols) if (p.startsWith('bearer.')) return p;
  return false;
}

/**
 * @fastify/websocket, with execd's limits: small client frames, the bearer
 * subprotocol echoed, and viewers closed first on shutdown (1001).
 */
export async function registerWebSockets(app: FastifyInstance, hub: ViewerHub): Promise<void> {
  const before = new Set(app.server.listeners('upgrade'));
  await app.register(fastifyWebsocket, {
    options: { maxPayload: MAX_CLIENT_FRAME_BYTES, handleProtocols: bearerProtocol, perMessageDeflate: false },
    preClose: async () => {
      // As the plugin's own preClose: no new upgrades, then the open sockets.
      for (const listener of app.server.listeners('upgrade')) {
        if (!before.has(listener)) app.server.removeListener('upgrade', listener as (...args: unknown[]) => void);
      }
      await hub.closeAll();
      app.websocketServer.close();
    },
  });
}
