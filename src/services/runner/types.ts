/** A command to run, as the runner sees it (routes translate their request bodies into this). */
export interface RunSpec {
  /** Exactly one of argv (no shell) and command (`/bin/sh -c`). */
  argv?: string[];
  command?: string;
  cwd?: string;
  env?: Record<string, string>;
  /** 'add' puts env over the small base environment; 'replace' uses env alone (Python's env=). */
  envMode: 'add' | 'replace';
  /** Bytes for stdin, then EOF; 'stream' keeps stdin open for writes; undefined is an empty stdin. */
  stdin?: Buffer | 'stream';
  /** Interleave stderr into stdout, as 2>&1. */
  mergeStderr: boolean;
  timeoutMs?: number;
  killGraceMs: number;
  maxOutputBytes: number;
  uid?: number;
  gid?: number;
}

export type TerminationReason = 'timeout' | 'cancel' | 'shutdown';

/** How a run ended: one shape for every outcome. */
export interface RunOutcome {
  pid: number;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Why execd killed it, when it did. */
  terminationReason: TerminationReason | null;
  startedAt: Date;
  finishedAt: Date;
  durationMs: number;
}
