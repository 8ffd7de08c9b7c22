import { isOutOfDescriptors, ResourceExhaustedError, SpawnError, toSpawnError } from './errors.js';
import { descriptorsAvailable, releaseDescriptorReserve } from './fd-reserve.js';
import type { OutputSink } from './output.js';
import { prepareSpawn, type PrepareContext } from './prepare.js';
import type { ChildHandle, Spawner } from './spawn.js';
import { killProcessGroup, terminateProcessGroup } from './terminate.js';
import type { RunOutcome, RunSpec, TerminationReason, TtySize } from './types.js';

export interface RunContext extends PrepareContext {
  spawner: Spawner;
  /** How long to wait for the pipes to close after the process exits (a grandchild may hold them). */
  pipeDrainMs: number;
}

export interface RunHandle {
  readonly pid: number;
  readonly startedAt: Date;
  /** Resolves when the process has exited and its output has been drained. Never rejects. */
  readonly done: Promise<RunOutcome>;
  /** Signal the whole process group. False when it is gone. */
  signal(signal: NodeJS.Signals): boolean;
  /** SIGTERM to the group, SIGKILL after the grace; the first reason given wins. */
  terminate(reason: TerminationReason): void;
  /** On a terminal: set its window size (SIGWINCH); false when the run has none, or it is closed. */
  resize(size: TtySize): boolean;
  /** Write to a streaming stdin; false when stdin is closed or was not requested as a stream. */
  writeStdin(data: Buffer): boolean;
  /** Resolves once the last write is in the child's pipe (or stdin is gone): back-pressure for writers. */
  stdinFlushed(): Promise<void>;
  endStdin(): void;
}

/**
 * Start a process in its own group and watch it. Rejects with SpawnError when it cannot start, or
 * ResourceExhaustedError when the server cannot start it now (nothing ran); afterwards every outcome arrives through `done`.
 */
export async function startRun(spec: RunSpec, sink: OutputSink, ctx: RunContext): Promise<RunHandle> {
  const options = await prepareSpawn(spec, ctx);
  const what = JSON.stringify(spec.argv?.[0] ?? '/bin/sh');
  // Out of descriptors a moment ago, and not recovered yet: refuse at once (fd-reserve.ts).
  if (!descriptorsAvailable()) throw new ResourceExhaustedError('EMFILE', `${what} could not be started now: the server is out of file descriptors; retry later`);
  let child: ChildHandle;
  try {
    child = await ctx.spawner.spawn(options);
  } catch (err) {
    const e = toSpawnError(err, what);
    if (e instanceof ResourceExhaustedError && isOutOfDescriptors(e.errno)) releaseDescriptorReserve();
    throw e;
  }
  const startedAt = new Date();
  const t0 = process.hrtime.bigint();
  const pid = child.pid;

  let reason: TerminationReason | null = null;
  let exited = false;
  let cancelKill: () => void = () => {};
  let timer: NodeJS.Timeout | undefined;

  const terminate = (why: TerminationReason) => {
    if (reason !== null || exited) return;
    reason = why;
    cancelKill = terminateProcessGroup(pid, spec.killGraceMs);
  };
  if (spec.timeoutMs !== undefined) timer = setTimeout(() => terminate('timeout'), spec.timeoutMs);

  const stdin = child.stdin;
  let stdinFlushed: Promise<void> = Promise.resolve();
  if (stdin) {
    stdin.on('error', () => {}); // EPIPE when the child does not read its stdin
    if (Buffer.isBuffer(spec.stdin)) stdin.end(spec.stdin);
  }

  const output = child.readOutput((name, chunk) => sink.write(name, chunk));

  const done = (async (): Promise<RunOutcome> => {
    const status = await child.exited;
    exited = true;
    const finishedAt = new Date();
    const durationMs = Number((process.hrtime.bigint() - t0) / 1_000_000n);
    if (timer) clearTimeout(timer);
    // A grandchild may hold the pipes open: wait a bounded time, then let go of them. Most runs' pipes
    // ended with the exit (the same batch of events): then there is nothing to wait for, and no timer.
    if (!output.ended) {
      let drainTimer: NodeJS.Timeout | undefined;
      await Promise.race([output.closed, new Promise<void>((r) => (drainTimer = setTimeout(r, ctx.pipeDrainMs)))]);
      clearTimeout(drainTimer); // one pending timer per run would otherwise linger for pipeDrainMs
    }
    output.destroy();
    stdin?.destroy();
    // Whatever the leader left in its group does not outlive the run.
    if (reason !== null) {
      cancelKill();
      killProcessGroup(pid, 'SIGKILL');
    } else {
      terminateProcessGroup(pid, spec.killGraceMs);
    }
    await output.closed;
    return {
      pid,
      exitCode: status.code,
      signal: status.signal,
      timedOut: reason === 'timeout',
      terminationReason: reason,
      startedAt,
      finishedAt,
      durationMs,
      usage: status.usage ?? null,
    };
  })();

  return {
    pid,
    startedAt,
    done,
    signal: (sig) => !exited && killProcessGroup(pid, sig),
    terminate,
    resize: (size) => !exited && child.resize !== undefined && child.resize(size),
    writeStdin: (data) => {
      if (!stdin || spec.stdin !== 'stream' || stdin.writableEnded || stdin.destroyed) return false;
      const s = stdin;
      stdinFlushed = new Promise<void>((resolve) => {
        // One 'close' listener per write while it is pending, not for the stream's life (a terminal's keystrokes are a write each).
        const flushed = () => (s.off('close', flushed), resolve());
        s.write(data, flushed);
        s.once('close', flushed);
      });
      return true;
    },
    // Until the last write is in the kernel's pipe, not until the stream is below its highWaterMark
    // ('drain'): that mark is Node's (16 KiB on Node 20, 64 KiB from 22), and what a child leaves unread
    // must wait in its pipe, not in the server.
    stdinFlushed: () => stdinFlushed,
    // A terminal's stdin ends as a terminal window closes: a hangup (docs/tty.md).
    endStdin: () => {
      if (child.hangup && spec.stdin === 'stream') child.hangup();
      else if (stdin && spec.stdin === 'stream' && !stdin.writableEnded) stdin.end();
    },
  };
}



/** Waits between a job's start attempts while the server is out of resources: 2.5 s in all. */
const JOB_START_RETRY_MS = [100, 200, 400, 800, 1000];

/**
 * startRun for a job: a start refused for want of the server's resources (ResourceExhaustedError:
 * nothing ran) is tried again a few times, 2.5 s in all, unless `stopped()` says the job was
 * canceled meanwhile; then the last error is thrown (the job fails with RESOURCE_EXHAUSTED).
 * Synchronous runs are not retried: their caller gets 503 with Retry-After at once.
 */
export async function startRunRetrying(spec: RunSpec, sink: OutputSink, ctx: RunContext, stopped: () => boolean): Promise<RunHandle> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await startRun(spec, sink, ctx);
    } catch (err) {
      const wait = JOB_START_RETRY_MS[attempt];
      if (!(err instanceof ResourceExhaustedError) || wait === undefined || stopped()) throw err;
      await new Promise((r) => setTimeout(r, wait));
      if (stopped()) throw err;
    }
  }
}

export { ResourceExhaustedError, SpawnError };
