import { join } from 'node:path';
import type { OutputSink, StreamName } from '../services/runner/index.js';
import type { LogListener, LogSubscription } from './log-subscription.js';
import { OutputLog, type OutputSnapshot } from './output-log.js';

export type { StreamName, OutputSnapshot };

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
  read(stream: StreamName, offset: number, length: number): Promise<Buffer>;
  /** The bytes kept now, readable to their end even if the job is deleted meanwhile; OutputRemovedError once it is. */
  snapshot(stream: StreamName): Promise<OutputSnapshot>;
  /** Bytes from `fromOffset` on, then live ones, then `end`; see LogSubscription (pause/resume/skip). */
  subscribe(stream: StreamName, fromOffset: number, listener: LogListener): LogSubscription;
}

export interface JobOutputOptions {
  dir: string;
  jobId: string;
  memoryBytes: number;
  maxBytes: number;
  onError?: (err: Error, stream: StreamName) => void;
}

/** Both streams of one job: the runner writes here (OutputSink), readers read here. */
export class JobOutput implements OutputSink, JobOutputReader {
  private readonly logs: Record<StreamName, OutputLog>;

  constructor(options: JobOutputOptions) {
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

  end(stream: StreamName): number {
    return this.logs[stream].end;
  }

  closed(stream: StreamName): boolean {
    return this.logs[stream].closed;
  }

  truncated(stream: StreamName): boolean {
    return this.logs[stream].truncated;
  }

  read(stream: StreamName, offset: number, length: number): Promise<Buffer> {
    return this.logs[stream].read(offset, length);
  }

  snapshot(stream: StreamName): Promise<OutputSnapshot> {
    return this.logs[stream].snapshot();
  }

  subscribe(stream: StreamName, fromOffset: number, listener: LogListener): LogSubscription {
    return this.logs[stream].subscribe(fromOffset, listener);
  }

  close(): void {
    this.logs.stdout.close();
    this.logs.stderr.close();
  }

  dispose(): void {
    this.logs.stdout.dispose();
    this.logs.stderr.dispose();
  }
}
