import { ExecdError, isAbort } from './errors.js';
import { request, type Transport } from './http.js';
import { sleep } from './socket.js';
import { isTerminal, type ExitFrame, type Job, type JobStreamEvent, type StreamName } from './types.js';

/**
 * GET /v1/jobs/{id}/output?follow=true as an async iterator of one stream's bytes, then an `exit` event
 * built from the finished job. A connection that drops is taken up again from the offset after the last
 * byte yielded (nothing lost, nothing twice). Plain HTTP: for clients where a WebSocket cannot go.
 */
export interface FollowOptions {
  stream?: StreamName;
  offset?: number;
  signal?: AbortSignal;
  /** Consecutive failed attempts before giving up (default 8). */
  maxAttempts?: number;
}

export async function* followJob(t: Transport, id: string, opts: FollowOptions = {}): AsyncGenerator<JobStreamEvent, void, undefined> {
  const stream = opts.stream ?? 'stdout';
  let offset = opts.offset ?? 0;
  let failures = 0;
  let delay = 100;
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  for (;;) {
    try {
      const res = await request(t, `${path}/output`, { query: { stream, offset, follow: 'true' }, signal: opts.signal });
      failures = 0;
      const reader = res.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (value.length === 0) continue;
        yield { type: 'output', stream, offset, data: value };
        offset += value.length;
      }
      // The body ends when the job does (or when the server stops following: shutdown); the job says which.
      const job = await request(t, path, { signal: opts.signal }).then((r) => r.json() as Promise<Job>);
      if (isTerminal(job.state) && offset >= job.outputBytes[stream]) {
        yield exitOf(job);
        return;
      }
    } catch (err) {
      if (isAbort(err) || opts.signal?.aborted) return;
      if (err instanceof ExecdError && err.refused && err.status !== 429) throw err;
      if (++failures >= (opts.maxAttempts ?? 8)) throw err instanceof ExecdError ? err : new ExecdError(0, 'UNREACHABLE', String(err));
      await sleep(delay, opts.signal);
      delay = Math.min(delay * 2, 5000);
    }
  }
}

/** The `exit` frame a stream would end with, from a finished Job. */
export function exitOf(job: Job): ExitFrame {
  const r = job.result;
  return {
    type: 'exit',
    state: job.state,
    exitCode: r?.exitCode ?? null,
    signal: r?.signal ?? null,
    returncode: r?.returncode ?? null,
    timedOut: r?.timedOut ?? false,
    truncated: r?.truncated ?? { stdout: false, stderr: false },
    truncatedReason: r?.truncatedReason ?? { stdout: null, stderr: null },
  };
}
