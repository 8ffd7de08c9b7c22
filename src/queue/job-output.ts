import { join } from 'node:path';
import type { OutputSink, StreamName } from '../runner/index.js';
import type { LogListener, LogSubscription, SubscribeOptions } from './log-subscription.js';
import { OutputLog, type OutputSnapshot, type TruncatedReason } from './output-log.js';

export type { StreamName, OutputSnapshot, TruncatedReason };

/**
 * What readers of a job's output see, whichever backend keeps it: `/output`
 * reads and follows it, the WebSocket viewers subscribe to it.
 */
export interface JobOutputReader {
  /** Offset after the last kept byte of `stream`. */
  end(stream: StreamName): number;
  /** True once no more bytes will come to `stream` (the job is terminal). */
  closed(stream: StreamName): boolean;
  truncated(stream: StreamName): boolean;
  /** Why bytes of `stream` were dropped (the cap, or the disk), or null. */
  truncatedReason(stream: StreamName): TruncatedReason | null;
  read(stream: StreamName, offset: number, length: number): Promise<Buffer>;
  /** The bytes kept now, readable to their end even if the job is deleted meanwhile; OutputRemovedError once it is. */
  snapshot(stream: StreamName): Promise<OutputSnapshot>;
  /** Bytes from `fromOffset` on, then live ones, then `end`; see LogSubscription (pause/resume/skip). */
  subscribe(stream: StreamName, fromOffset: number, listener: LogListener, options?: SubscribeOptions): LogSubscription;
}

export interface JobOutputOptions {
  /** A directory only the server can write (ops/data-dir.ts): the files are `<dir>/<jobId>.<stream>`. */
  dir: string;
  jobId: string;
  memoryBytes: number;
  maxBytes: number;
  onError?: (err: Error, stream: StreamName) => void;
}

/** A JobOutputReader over one OutputLog per stream (a job's own logs, or a node's copy of them). */
export abstract class LogPair implements JobOutputReader {
  protected abstract readonly logs: Record<StreamName, OutputLog>;

  end(stream: StreamName): number {
    return this.logs[stream].end;
  }

  closed(stream: StreamName): boolean {
    return this.logs[stream].closed;
  }

  truncated(stream: StreamName): boolean {
    return this.logs[stream].truncated;
  }

  truncatedReason(stream: StreamName): TruncatedReason | null {
    return this.logs[stream].truncatedReason;
  }

  read(stream: StreamName, offset: number, length: number): Promise<Buffer> {
    return this.logs[stream].read(offset, length);
  }

  snapshot(stream: StreamName): Promise<OutputSnapshot> {
    return this.logs[stream].snapshot();
  }

  subscribe(stream: StreamName, fromOffset: number, listener: LogListener, options?: SubscribeOptions): LogSubscription {
    return this.logs[stream].subscribe(fromOffset, listener, options);
  }

  dispose(): void {
    this.logs.stdout.dispose();
    this.logs.stderr.dispose();
  }
}

/** Both streams of one job: the runner writes here (OutputSink), readers read here. */
export class JobOutput extends LogPair implements OutputSink {
  protected readonly logs: Record<StreamName, OutputLog>;

  constructor(options: JobOutputOptions) {
    super();
    const make = (stream: StreamName) =>
      new OutputLog({
        file: join(options.dir, `${options.jobId}.${stream}`),
        memoryBytes: options.memoryBytes,
        maxBytes: options.maxBytes,
        onError: (err) => options.onError?.(err, stream),
      });
    this.logs = { stdout: make('stdout'), stderr: make('stderr') };
  }

  log(stream: StreamName): OutputLog {
    return this.logs[stream];
  }

  write(stream: StreamName, chunk: Buffer): void {
    this.logs[stream].append(chunk);
  }

  close(): void {
    this.logs.stdout.close();
    this.logs.stderr.close();
  }
}
