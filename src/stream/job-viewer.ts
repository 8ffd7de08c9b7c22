import type { RawData, WebSocket } from 'ws';
import { ApiError, DomainError } from '../errors.js';
import { apiCodeOf } from '../plugins/errors.js';
import { isTerminal, type LogEvent, type LogSubscription, type StreamName } from '../queue/index.js';
import { OutputRemovedError, type ReadAheadBudget } from '../queue/log-subscription.js';
import type { Job } from '../schemas/jobs.js';
import { BINARY_HEADER_BYTES, ClientFrame, type LagPolicy, type StreamEncoding } from '../schemas/stream.js';
import { canSee, hasScope, type Principal } from '../security/auth.js';
import { isSignalName } from '../runner/index.js';
import { base64OutputFrame, binaryOutputHeader, exitFrame, gapFrame, putBinaryHeader, stateFrame, textOutputFrame } from './frames.js';
import { streamMetrics } from './metrics.js';
import { Utf8Framer } from './utf8-framer.js';
import { MAX_INVALID_FRAMES, Viewer, type ViewerContext } from './viewer.js';

export interface JobViewerOptions {
  jobId: string;
  encoding: StreamEncoding;
  /** wait: every byte kept, at the viewer's pace; skip: a viewer too slow for the live output jumps to the live edge (a gap). */
  lag: LagPolicy;
  /** Byte offset of the first byte wanted, per stream. */
  offsets: Record<StreamName, number>;
  /**
   * The token: stdin and signal frames need its jobs:write, checked on every frame against the scopes
   * the last reload left it (Viewer.revalidate); its id goes on audit lines.
   */
  principal: Principal;
}

interface Feed {
  readonly stream: StreamName;
  sub: LogSubscription | null;
  /**
   * The stream's end when the viewer connected. With lag=skip, bytes before it
   * are the replay, delivered exactly at the viewer's pace; bytes after it are
   * live, and a viewer too slow for them skips to the live edge (a gap frame).
   * With lag=wait every byte is delivered exactly.
   */
  replayEnd: number;
  framer: Utf8Framer | null;
  ended: boolean;
}

const STREAMS: readonly StreamName[] = ['stdout', 'stderr'];
/** Most bytes of output in one binary frame (with EXECD_WS_MAX_BUFFER_BYTES, if smaller). */
export const BINARY_FRAME_BYTES = 1024 * 1024;
/** Most bytes of output in one text frame (with a quarter of EXECD_WS_MAX_BUFFER_BYTES, if smaller): JSON escapes can multiply them. */
export const TEXT_FRAME_BYTES = 256 * 1024;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * State frames only move forward: scheduled < queued < running per attempt (a retried job waits and runs again:
 * `attempt` counts the attempts started), then the terminal state.
 */
const rank = (job: Job): number => {
  if (isTerminal(job.state)) return Number.MAX_SAFE_INTEGER;
  if (job.state === 'running') return job.attempt * 4 - 1;
  return job.attempt * 4 + (job.state === 'scheduled' ? 1 : 2);
};

/**
 * Where a viewer is, one of four:
 * - streaming: output flows as it comes;
 * - throttled: the socket's send buffer is full, output paused until it drains (onDrain);
 * - finishing: both streams ended, waiting for the job's terminal state to send the exit frame;
 * - disposed: the socket is closed; nothing more is sent or applied.
 * `disposed` is final; `finishing` only ends in it.
 */
type Phase = 'streaming' | 'throttled' | 'finishing' | 'disposed';

const NEXT_PHASE: Record<Phase, readonly Phase[]> = {
  streaming: ['throttled', 'finishing', 'disposed'],
  throttled: ['streaming', 'finishing', 'disposed'],
  finishing: ['disposed'],
  disposed: [],
};

/**
 * A viewer of one job (GET /v1/jobs/{id}/stream): the replay, then live
 * output of both streams, state changes and the exit, as frames; stdin and
 * signal frames the other way. The job never waits for it.
 */
export class JobViewer extends Viewer {
  private readonly feeds: Feed[];
  private phase: Phase = 'streaming';
  /** The last state frame sent, as its rank (queued 0, running 1, terminal 2; -1 before any): states only move forward. */
  private sentRank = -1;
  /** The job was created with stdin {"stream": true} (known once start() has read it). */
  private streamStdin = false;
  private invalidFrames = 0;
  /** Client input runs in order, one operation at a time. */
  private input: Promise<void> = Promise.resolve();
  private inputBusy = 0;
  /** Most output bytes in one frame: a catch-up read or a batch of live chunks is one frame. */
  private readonly frameBytes: number;
  /** A chunk of the log is held, read ahead while the send buffer drains (one per viewer, whichever stream). */
  private aheadHeld = false;
  /** The read-ahead's memory counts in the send budget of all viewers (EXECD_WS_TOTAL_BUFFER_BYTES). */
  private readonly readAhead: ReadAheadBudget = {
    tryReserve: (bytes) => {
      const budget = this.ctx.budget;
      if (this.aheadHeld || budget.total + bytes > budget.limit) return false;
      this.aheadHeld = true;
      budget.total += bytes;
      return true;
    },
    release: (bytes) => {
      this.aheadHeld = false;
      this.ctx.budget.total -= bytes;
    },
  };

  constructor(
    ws: WebSocket,
    ctx: ViewerContext,
    readonly options: JobViewerOptions,
  ) {
    super(ws, ctx, options.principal);
    this.frameBytes =
      options.encoding === 'binary' ? Math.min(BINARY_FRAME_BYTES, ctx.maxBufferBytes) : Math.min(TEXT_FRAME_BYTES, Math.floor(ctx.maxBufferBytes / 4));
    this.feeds = STREAMS.map((stream) => ({
      stream,
      sub: null,
      replayEnd: 0,
      framer: options.encoding === 'utf8' ? new Utf8Framer() : null,
      ended: false,
    }));
  }

  get jobId(): string {
    return this.options.jobId;
  }

  private get disposed(): boolean {
    return this.phase === 'disposed';
  }

  /** The one place the phase changes: false (and no change) for a move NEXT_PHASE does not allow. */
  private moveTo(next: Phase): boolean {
    if (!NEXT_PHASE[this.phase].includes(next)) return false;
    this.phase = next;
    return true;
  }

  protected override get watching(): Record<string, unknown> {
    return { jobId: this.jobId };
  }

  /** Subscribe to the job's output (the hub registered the viewer for state events already). */
  start(): Promise<void> {
    const started = this.subscribeOutput();
    // Client input waits until the viewer knows the job: a stdin frame sent on a "running" state frame that
    // arrived (from the hub's events) before this start finished is applied, not refused.
    this.input = started.catch(() => {});
    return started;
  }

  private async subscribeOutput(): Promise<void> {
    const { jobs } = this.ctx;
    const [output, job] = await Promise.all([jobs.output(this.jobId), jobs.get(this.jobId)]);
    if (this.disposed) return;
    if (!output || !job) return this.fail('NOT_FOUND', `job ${this.jobId} is gone`);
    // A terminal's stdin is a stream unless bytes were given (src/spec/run-spec.ts).
    this.streamStdin = typeof job.spec.stdin === 'object' || (!!job.spec.tty && job.spec.stdin === undefined);
    if (!isTerminal(job.state)) this.sendState(job);
    // Binary: each live chunk is a frame as it comes (its header sent before it, the bytes not copied), and a
    // read from the log gets room for the header before its bytes. Text: the live chunks of one turn of the
    // event loop are one frame (one JSON encoding for them all).
    const binary = this.options.encoding === 'binary';
    const subscribeOptions = {
      chunkBytes: this.frameBytes,
      batch: !binary,
      headroom: binary ? BINARY_HEADER_BYTES : 0,
      readAhead: this.readAhead,
    };
    for (const feed of this.feeds) {
      feed.replayEnd = output.end(feed.stream);
      feed.sub = output.subscribe(feed.stream, this.options.offsets[feed.stream], (event) => this.onLog(feed, event), subscribeOptions);
    }
  }

  /** A lifecycle event of this job (from the hub). The terminal state waits for the last output. */
  onJobEvent(job: Job): void {
    if (!this.disposed && !isTerminal(job.state)) this.sendState(job);
  }

  private sendState(job: Job): void {
    // A worker took the job but its process is not there yet: "running" is said once it is (the started event), with its pid.
    if (job.state === 'running' && job.pid === null) return;
    const r = rank(job);
    if (r <= this.sentRank) return;
    this.sentRank = r;
    this.outbox.send(stateFrame(job));
  }

  private onLog(feed: Feed, event: LogEvent): void {
    if (this.disposed) return;
    if (event.type === 'data') {
      this.sendOutput(feed, event.offset, event.data, event.room);
      if (this.phase === 'streaming' && this.outbox.overloaded) this.throttle();
    } else if (event.type === 'end') {
      const tail = feed.framer?.flush();
      if (tail) this.outbox.send(textOutputFrame(feed.stream, tail.offset, tail.bytes));
      // Bytes past the cap (or a full disk) were never kept: the stream's last frame says so (from this viewer's offset, if later).
      const from = Math.max(event.end, feed.sub?.next ?? 0);
      if (event.end + event.dropped > from) this.sendGap(feed.stream, from, event.end + event.dropped);
      feed.ended = true;
      if (this.feeds.every((f) => f.ended)) void this.finish();
    } else if (event.error instanceof OutputRemovedError) {
      this.removed();
    } else {
      this.ctx.log.error({ err: event.error, jobId: this.jobId, stream: feed.stream }, 'job output could not be read for a viewer');
      this.sendError('INTERNAL', 'the output could not be read; the error has been logged');
      this.close(1011, 'internal error');
    }
  }

  /** `room`: the bytes with BINARY_HEADER_BYTES free before them (binary frames are built there, without a copy). */
  private sendOutput(feed: Feed, offset: number, data: Buffer, room: Buffer | undefined): void {
    const max = this.frameBytes;
    if (this.options.encoding === 'binary') {
      if (room !== undefined && data.length <= max) {
        // Once written, the subscription may read its next chunk from the file into the same memory.
        return this.outbox.send(putBinaryHeader(room, feed.stream, offset), true, () => feed.sub?.recycle(room));
      }
      for (let at = 0; at < data.length; at += max) {
        this.outbox.sendParts(binaryOutputHeader(feed.stream, offset + at), data.length <= max ? data : data.subarray(at, at + max));
      }
      return;
    }
    for (let at = 0; at < data.length; at += max) {
      const part = data.length <= max ? data : data.subarray(at, at + max);
      if (feed.framer === null) {
        this.outbox.send(base64OutputFrame(feed.stream, offset + at, part));
      } else {
        const piece = feed.framer.push(offset + at, part);
        if (piece) this.outbox.send(textOutputFrame(feed.stream, piece.offset, piece.bytes));
      }
    }
  }

  private sendGap(stream: StreamName, from: number, to: number): void {
    streamMetrics.gapsTotal++;
    streamMetrics.gapBytesTotal += to - from;
    this.outbox.send(gapFrame(stream, from, to));
  }

  /** The job was removed (DELETE, retention): a gap for what each stream held and this viewer did not get, NOT_FOUND, close 1001. */
  private removed(): void {
    for (const feed of this.feeds) {
      const sub = feed.sub;
      if (feed.ended || !sub) continue;
      sub.close();
      const from = feed.framer?.drop() ?? sub.next;
      if (sub.logEnd > from) this.sendGap(feed.stream, from, sub.logEnd);
    }
    this.fail('NOT_FOUND', `job ${this.jobId} was removed, and its output with it`);
  }

  /** The send buffer is full: stop taking output until it drains. */
  private throttle(): void {
    this.moveTo('throttled');
    for (const feed of this.feeds) feed.sub?.pause();
    this.outbox.waitForDrain();
  }

  /**
   * Drained: output goes on where it stopped (from the output log). With lag=skip, a stream in its live part
   * skips to the live edge instead (a gap frame says what was skipped).
   */
  protected onDrain(): void {
    if (this.phase !== 'throttled') return;
    this.moveTo('streaming');
    if (this.options.lag === 'skip') {
      for (const feed of this.feeds) {
        const sub = feed.sub;
        if (feed.ended || !sub || sub.next < feed.replayEnd) continue;
        const { from, to } = sub.skip();
        if (to <= from) continue;
        this.sendGap(feed.stream, feed.framer?.drop() ?? from, to);
      }
    }
    for (const feed of this.feeds) feed.sub?.resume();
  }

  /** Both streams ended: the terminal state, the exit frame, close 1000. */
  private async finish(): Promise<void> {
    if (!this.moveTo('finishing')) return;
    let job = await this.ctx.jobs.waitForTerminal(this.jobId, 60_000);
    while (job && !isTerminal(job.state) && !this.disposed) job = await this.ctx.jobs.waitForTerminal(this.jobId, 60_000);
    if (this.disposed) return;
    if (!job) return this.fail('NOT_FOUND', `job ${this.jobId} was removed`);
    this.sendState(job);
    this.outbox.send(exitFrame(job));
    this.close(1000, 'job finished');
  }

  /** Tell the client why (an error frame), then close 1001: the job is going away. */
  private fail(code: string, detail: string): void {
    this.sendError(code, detail);
    this.close(1001, 'job removed');
  }

  protected dispose(): void {
    this.moveTo('disposed');
    for (const feed of this.feeds) feed.sub?.close();
  }

  // Client → server frames

  protected onMessage(data: RawData, isBinary: boolean): void {
    if (isBinary) return this.invalid('frames are JSON text, not binary');
    let json: unknown;
    try {
      json = JSON.parse(String(data));
    } catch {
      return this.invalid('the frame is not JSON');
    }
    const parsed = ClientFrame.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const where = issue.path.length ? `/${issue.path.join('/')}: ` : '';
      return this.invalid(`${where}${issue.message} (frames: {"type":"stdin","data":"…"}, {"type":"stdin","eof":true}, {"type":"signal","signal":"SIGINT"}, {"type":"resize","cols":80,"rows":24})`);
    }
    if (!this.mayWrite()) return this.refuseWrite();
    const frame = parsed.data;
    if (frame.type === 'signal') {
      const { signal } = frame;
      if (!isSignalName(signal)) return this.invalid(`unknown signal ${JSON.stringify(signal)}: give a name such as "SIGINT"`);
      return this.enqueue(() => this.signal(signal));
    }
    if (frame.type === 'resize') {
      const { cols, rows } = frame;
      return this.enqueue(() => this.resize(cols, rows));
    }
    let bytes: Buffer | null = null;
    if (frame.data !== undefined) {
      const { encoding } = this.options;
      if (encoding !== 'utf8' && !BASE64.test(frame.data)) return this.invalid(`/data: not valid base64 (this connection has encoding=${encoding})`);
      bytes = Buffer.from(frame.data, encoding === 'utf8' ? 'utf8' : 'base64');
    }
    const eof = frame.eof === true;
    this.enqueue(() => this.writeStdin(bytes, eof));
  }

  /** Refuse an invalid frame with an error frame; a client that keeps sending them is closed 1008. */
  private invalid(detail: string, code = 'VALIDATION_FAILED'): void {
    streamMetrics.refusedFramesTotal++;
    this.sendError(code, detail);
    if (++this.invalidFrames > MAX_INVALID_FRAMES) this.close(1008, 'too many invalid frames');
  }

  /** Run client input in order; while it waits (a child not reading its stdin), stop reading the socket. */
  private enqueue(op: () => Promise<void>): void {
    if (++this.inputBusy >= 2 && !this.readingPaused) {
      this.readingPaused = true;
      this.ws.pause();
    }
    this.input = this.input
      .then(op)
      .catch((err: unknown) => {
        this.ctx.log.error({ err, jobId: this.jobId }, 'WebSocket input failed');
        this.sendError('INTERNAL', 'the frame could not be applied; the error has been logged');
      })
      .finally(() => {
        if (--this.inputBusy === 0 && this.readingPaused) {
          this.readingPaused = false;
          if (!this.disposed) this.ws.resume();
        }
      });
  }

  /** The token holds jobs:write now (a reload may have taken it since the upgrade, or since the frame arrived). */
  private mayWrite(): boolean {
    const principal = this.principal;
    return principal !== null && hasScope(principal, 'jobs:write');
  }

  private refuseWrite(): void {
    const id = JSON.stringify(this.principal?.id ?? this.options.principal.id);
    this.invalid(`stdin and signal frames need the scope "jobs:write", which token ${id} does not hold (now)`, 'FORBIDDEN');
  }

  /** A reload narrowed the token: a job it can no longer see (another token's, once admin is gone) is no longer streamed to it. */
  protected override onPrincipalChanged(principal: Principal): void {
    if (principal.scopes.has('admin')) return;
    void this.ctx.jobs.ownerOf(this.jobId).then(
      (owner) => {
        if (!this.disposed && this.principal === principal && owner !== undefined && !canSee(principal, owner)) {
          this.revoke('FORBIDDEN', `token ${JSON.stringify(principal.id)} can no longer see job ${this.jobId} (EXECD_TOKENS_FILE reloaded)`, 'token lost the scope admin');
        }
      },
      () => {}, // the backend away: the next reload looks again
    );
  }

  private async writeStdin(bytes: Buffer | null, eof: boolean): Promise<void> {
    if (this.disposed) return;
    if (!this.mayWrite()) return this.refuseWrite();
    const { jobs } = this.ctx;
    let ok = this.streamStdin;
    if (ok && bytes !== null && bytes.length > 0) ok = await jobs.writeStdin(this.jobId, bytes);
    if (ok && eof) ok = await jobs.writeStdin(this.jobId, null);
    if (!ok && !this.disposed) this.sendError('CONFLICT', await this.whyNoStdin());
  }

  private async whyNoStdin(): Promise<string> {
    if (!this.streamStdin) return `job ${this.jobId} was not created with "stdin": {"stream": true}`;
    const job = await this.ctx.jobs.get(this.jobId);
    if (!job || isTerminal(job.state)) return `job ${this.jobId} has ended`;
    if (job.state === 'queued') return `job ${this.jobId} has not started yet: write once the state frame says "running"`;
    return `the stdin of job ${this.jobId} is closed (eof was sent, or the process closed it)`;
  }

  /** A terminal's new window size (docs/tty.md). */
  private async resize(cols: number, rows: number): Promise<void> {
    if (this.disposed) return;
    if (!this.mayWrite()) return this.refuseWrite();
    if (await this.ctx.jobs.resize(this.jobId, cols, rows)) return;
    if (!this.disposed) this.sendError('CONFLICT', `job ${this.jobId} has no terminal to resize (it was not created with "tty", or its process is not running)`);
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    if (this.disposed) return;
    if (!this.mayWrite()) return this.refuseWrite();
    let outcome = 'ok';
    try {
      await this.ctx.jobs.signal(this.jobId, signal);
    } catch (err) {
      // The queue's refusals (not found, not running) are answered with the API's codes.
      const code = err instanceof ApiError ? err.code : err instanceof DomainError ? apiCodeOf(err) : undefined;
      if (code === undefined) throw err;
      outcome = 'refused';
      this.sendError(code, (err as Error).message);
    }
    this.ctx.audit.info({ event: 'job.signal', via: 'websocket', tokenId: this.options.principal.id, jobId: this.jobId, signal, outcome }, 'job.signal');
  }
}
