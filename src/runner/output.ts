export type StreamName = 'stdout' | 'stderr';

/** Where a running process's output goes, chunk by chunk, in order per stream. */
export interface OutputSink {
  write(stream: StreamName, chunk: Buffer): void;
}

/**
 * Keeps each stream's bytes up to `limit`; the rest is counted and dropped,
 * so the process keeps running and the server's memory stays bounded.
 */
export class BoundedCapture implements OutputSink {
  private readonly chunks: Record<StreamName, Buffer[]> = { stdout: [], stderr: [] };
  private readonly kept: Record<StreamName, number> = { stdout: 0, stderr: 0 };
  readonly total: Record<StreamName, number> = { stdout: 0, stderr: 0 };

  constructor(private readonly limit: number) {}

  write(stream: StreamName, chunk: Buffer): void {
    this.total[stream] += chunk.length;
    const room = this.limit - this.kept[stream];
    if (room <= 0) return;
    const part = chunk.length <= room ? chunk : chunk.subarray(0, room);
    this.chunks[stream].push(part);
    this.kept[stream] += part.length;
  }

  truncated(stream: StreamName): boolean {
    return this.total[stream] > this.kept[stream];
  }

  bytes(stream: StreamName): Buffer {
    const list = this.chunks[stream];
    return list.length === 1 ? list[0]! : Buffer.concat(list, this.kept[stream]);
  }
}

/** Fan one chunk out to several sinks. */
export const teeSinks = (...sinks: OutputSink[]): OutputSink => ({
  write(stream, chunk) {
    for (const s of sinks) s.write(stream, chunk);
  },
});
