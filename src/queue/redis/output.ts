import { join } from 'node:path';
import type { Redis } from 'ioredis';
import type { OutputSink, StreamName } from '../../runner/index.js';
import { LogPair } from '../job-output.js';
import type { LogListener, LogSubscription, SubscribeOptions } from '../log-subscription.js';
import { OutputLog, type TruncatedReason } from '../output-log.js';

const STREAMS: readonly StreamName[] = ['stdout', 'stderr'];
/** A pending chunk this big is sent at once; smaller ones are coalesced until the next turn of the event loop. */
const FLUSH_BYTES = 64 * 1024;
/** Entries per XRANGE/XREAD call. */
const PAGE = 256;
/** Live bytes handed to local viewers between two turns of the event loop (their sockets write meanwhile). */
const YIELD_BYTES = 1024 * 1024;

export const outputKey = (prefix: string, jobId: string, stream: StreamName) => `${prefix}:out:${jobId}:${stream}`;
/** The record field counting a stream's bytes. */
export const BYTES_FIELD: Record<StreamName, string> = { stdout: 'obo', stderr: 'obe' };

interface Pending {
  /** Entries written: each gets the next explicit id, so a resent XADD is refused instead of doubling the bytes. */
  entries: number;
  kept: number;
  dropped: number;
  chunks: Buffer[];
  bytes: number;
}

/**
 * The worker's side of a job's output: the runner writes here; chunks go to
 * the job's Redis streams (coalesced per event-loop turn), up to the cap.
 * The end entries are written by the FINISH script, in the same step as the
 * terminal state, so a reader that sees the end also sees the final state.
 * Commands queue on a connection that waits through Redis outages: bounded
 * by the cap, and by the worker killing its jobs when Redis stays away.
 */
export class RedisOutputWriter implements OutputSink {
  private readonly streams: Record<StreamName, Pending> = {
    stdout: { entries: 0, kept: 0, dropped: 0, chunks: [], bytes: 0 },
    stderr: { entries: 0, kept: 0, dropped: 0, chunks: [], bytes: 0 },
  };
  private scheduled = false;
  private last: Promise<void> = Promise.resolve();

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly jobId: string,
    private readonly cap: number,
    private readonly onError: (err: Error) => void,
    /**
     * Which attempt writes, and where its output begins: every attempt appends to the same streams (entry ids
     * <attempt>-<n>, so a late write of an attempt declared lost is refused after its successor's), and the cap
     * counts the job's bytes across attempts.
     */
    private readonly from: { attempt: number; base: { stdout: number; stderr: number } } = { attempt: 0, base: { stdout: 0, stderr: 0 } },
  ) {
    this.streams.stdout.kept = from.base.stdout;
    this.streams.stderr.kept = from.base.stderr;
  }

  write(stream: StreamName, chunk: Buffer): void {
    const s = this.streams[stream];
    const room = this.cap - s.kept;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, Math.max(0, room));
    s.dropped += chunk.length - part.length;
    if (part.length === 0) return;
    s.kept += part.length;
    s.chunks.push(part);
    s.bytes += part.length;
    if (s.bytes >= FLUSH_BYTES) void this.flush();
    else if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => void this.flush());
    }
  }

  /** Send what is pending; resolves once Redis has every chunk written so far. */
  flush(): Promise<void> {
    this.scheduled = false;
    const pipeline = this.redis.pipeline();
    let any = false;
    for (const stream of STREAMS) {
      const s = this.streams[stream];
      if (s.bytes === 0) continue;
      const data = s.chunks.length === 1 ? s.chunks[0]! : Buffer.concat(s.chunks, s.bytes);
      s.chunks = [];
      s.bytes = 0;
      // Both idempotent: the connection resends what was in flight when it dropped.
      const id = this.from.attempt > 0 ? `${this.from.attempt}-${++s.entries}` : `${++s.entries}-1`;
      pipeline.xadd(outputKey(this.prefix, this.jobId, stream), id, 'd', data);
      pipeline.hset(`${this.prefix}:job:${this.jobId}`, BYTES_FIELD[stream], s.kept); // s.kept: every byte sent once this entry lands
      any = true;
    }
    if (!any) return this.last;
    this.last = pipeline.exec().then(
      (results) => {
        const failed = results?.find(([err]) => err);
        if (failed) this.onError(failed[0]!);
      },
      (err: Error) => this.onError(err),
    );
    return this.last;
  }

  truncated(stream: StreamName): boolean {
    return this.streams[stream].dropped > 0;
  }

  /** Only the cap drops bytes here: the output goes to Redis, not to a file of this node. */
  truncatedReason(stream: StreamName): TruncatedReason | null {
    return this.streams[stream].dropped > 0 ? 'max_output' : null;
  }

  dropped(stream: StreamName): number {
    return this.streams[stream].dropped;
  }
}

type Entry = [id: Buffer, fields: Buffer[]];

const entryBytes = ([, fields]: Entry): number => fields.reduce((n, f) => n + f.length, 0);

/**
 * A job's output as a node that does not run it sees it: a local copy of the
 * job's Redis streams (memory, then a file in this instance's private
 * directory under EXECD_DATA_DIR, made and read exactly as the memory
 * backend's logs: O_EXCL|O_NOFOLLOW, 0600), filled by one catch-up read and then by the
 * node's Tailer. Readers and subscriptions work on the copy exactly as on a
 * local job, with the same byte offsets.
 */
export class OutputMirror extends LogPair {
  protected readonly logs: Record<StreamName, OutputLog>;
  readonly lastIds: Record<StreamName, string> = { stdout: '0-0', stderr: '0-0' };
  lastUsed = Date.now();
  disposed = false;
  /** Resolves once the copy holds everything the streams held when it was made. */
  readonly ready: Promise<void>;

  constructor(
    private readonly redis: Redis,
    readonly prefix: string,
    readonly jobId: string,
    dir: string,
    memoryBytes: number,
    onError: (err: Error, stream: StreamName) => void,
  ) {
    super();
    const make = (stream: StreamName) =>
      new OutputLog({
        file: join(dir, `${jobId}.${stream}`),
        memoryBytes,
        maxBytes: Number.MAX_SAFE_INTEGER, // the writer applied the job's cap; its drops arrive with the end entry
        onError: (err) => onError(err, stream),
      });
    this.logs = { stdout: make('stdout'), stderr: make('stderr') };
    this.ready = Promise.all(STREAMS.map((s) => this.catchUp(s))).then(() => undefined);
    this.ready.catch(() => {}); // a reader that went away before awaiting it must not leave an unhandled rejection
  }

  key(stream: StreamName): string {
    return outputKey(this.prefix, this.jobId, stream);
  }

  /** True while someone reads it (a subscription); an idle copy is dropped after a while. */
  get inUse(): boolean {
    return this.logs.stdout.subscribers + this.logs.stderr.subscribers > 0;
  }

  /** Apply stream entries in order: data chunks, then the end entry (with the writer's dropped bytes). */
  apply(stream: StreamName, entries: Entry[]): void {
    if (this.disposed) return;
    const log = this.logs[stream];
    for (const [id, fields] of entries) {
      this.lastIds[stream] = id.toString('latin1');
      if (log.closed) continue;
      for (let i = 0; i + 1 < fields.length; i += 2) {
        const name = fields[i]!.toString('latin1');
        if (name === 'd') log.append(fields[i + 1]!);
        else if (name === 't') log.noteDropped(Number(fields[i + 1]!.toString('latin1')) || 0);
      }
      if (fields.some((f, i) => i % 2 === 0 && f.length === 1 && f[0] === 0x65 /* e */)) log.close();
    }
  }

  private async catchUp(stream: StreamName): Promise<void> {
    for (;;) {
      const entries = (await this.redis.xrangeBuffer(this.key(stream), `(${this.lastIds[stream]}`, '+', 'COUNT', PAGE)) as unknown as Entry[];
      this.apply(stream, entries);
      if (entries.length < PAGE || this.logs[stream].closed || this.disposed) return;
    }
  }

  override subscribe(stream: StreamName, fromOffset: number, listener: LogListener, options?: SubscribeOptions): LogSubscription {
    this.lastUsed = Date.now();
    return super.subscribe(stream, fromOffset, listener, options);
  }

  override dispose(): void {
    this.disposed = true;
    super.dispose();
  }
}

interface Target {
  mirror: OutputMirror;
  stream: StreamName;
}

/**
 * One blocking connection per node that follows every stream a local
 * mirror still waits for (XREAD over all of them). A new stream interrupts
 * the current wait (CLIENT UNBLOCK), so live output flows at once.
 */
export class Tailer {
  private readonly targets = new Map<string, Target>();
  private clientId: number | null = null;
  private looping = false;
  private blocked = false;
  private closed = false;

  constructor(
    private readonly conn: Redis,
    /** A second connection, to unblock the first. */
    private readonly control: Redis,
    private readonly onError: (err: Error) => void,
  ) {
    conn.on('ready', () => {
      this.clientId = null;
      conn.client('ID').then((id) => (this.clientId = Number(id)), () => {});
    });
  }

  follow(mirror: OutputMirror): void {
    for (const stream of STREAMS) {
      if (mirror.closed(stream)) continue;
      this.targets.set(mirror.key(stream), { mirror, stream });
    }
    this.wake();
    if (!this.looping) void this.loop();
  }

  unfollow(mirror: OutputMirror): void {
    for (const stream of STREAMS) {
      const key = mirror.key(stream);
      if (this.targets.get(key)?.mirror === mirror) this.targets.delete(key);
    }
  }

  close(): void {
    this.closed = true;
    this.targets.clear();
    this.wake();
  }

  private wake(): void {
    if (this.blocked && this.clientId !== null) this.control.client('UNBLOCK', this.clientId).catch(() => {});
  }

  private async loop(): Promise<void> {
    this.looping = true;
    try {
      while (!this.closed && this.targets.size > 0) {
        const keys = [...this.targets.keys()];
        const ids = keys.map((k) => {
          const t = this.targets.get(k)!;
          return t.mirror.lastIds[t.stream];
        });
        let result: [Buffer, Entry[]][] | null;
        this.blocked = true;
        try {
          result = (await this.conn.xreadBuffer('COUNT', PAGE, 'BLOCK', 1000, 'STREAMS', ...keys, ...ids)) as unknown as [Buffer, Entry[]][] | null;
        } catch (err) {
          if (this.closed) return;
          this.onError(err as Error);
          await new Promise((r) => setTimeout(r, 500));
          continue;
        } finally {
          this.blocked = false;
        }
        let sinceYield = 0;
        for (const [key, entries] of result ?? []) {
          const name = key.toString('latin1');
          for (const entry of entries) {
            const target = this.targets.get(name);
            if (!target) break;
            target.mirror.apply(target.stream, [entry]);
            if (target.mirror.closed(target.stream) || target.mirror.disposed) this.targets.delete(name);
            // A turn of the event loop now and then: the viewers' sockets write (a batch of live chunks is one frame)
            // while a long read is applied.
            sinceYield += entryBytes(entry);
            if (sinceYield >= YIELD_BYTES) {
              sinceYield = 0;
              await new Promise((r) => setImmediate(r));
            }
          }
        }
      }
    } finally {
      this.looping = false;
    }
  }
}
