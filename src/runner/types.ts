import type { ResourceUsage } from './spawn.js';

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
  /**
   * Run on a new pseudo-terminal of this window size (docs/tty.md): its own session with the terminal as its
   * controlling terminal on fds 0-2, output one stream (stdout), stdin bytes typed at the terminal.
   */
  tty?: TtySize;
  timeoutMs?: number;
  killGraceMs: number;
  maxOutputBytes: number;
  /** Set by the policy gate when the server is root: the user the command runs as (no supplementary groups). */
  uid?: number;
  gid?: number;
  /** HOME of the base environment (the run-as user's); the server's own by default. */
  home?: string;
  /** Resource limits, applied by wrapping the program with prlimit(1). */
  limits?: ResourceLimits;
  /**
   * Set by the policy gate when a rule checked the executable: the file it checked, which runs
   * instead of argv[0] resolved again (argv itself is passed unchanged).
   */
  program?: CheckedProgram;
}

/** A program file as the command policy resolved and checked it (JSON-able: a job keeps it until it starts). */
export interface CheckedProgram {
  /** Absolute, with no "." or ".." and no relative part: the path the kernel reaches from the checked cwd. */
  file: string;
  /** Its device and inode when checked, as decimal strings (an inode number may pass 2^53). */
  dev: string;
  ino: string;
  /** Where dev and ino mean something: the kernel boot and mount namespace that checked it (another host's differ). */
  view: string;
}

/** A terminal's window size, in character cells. */
export interface TtySize {
  cols: number;
  rows: number;
}

/** RLIMIT_CPU, RLIMIT_AS, RLIMIT_FSIZE, RLIMIT_NOFILE and RLIMIT_NPROC of a run. */
export interface ResourceLimits {
  cpuSeconds?: number | undefined;
  memoryBytes?: number | undefined;
  fileSizeBytes?: number | undefined;
  openFiles?: number | undefined;
  processes?: number | undefined;
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
  /** CPU time and peak RSS from the kernel (wait4); null when the spawner cannot tell (child_process). */
  usage: ResourceUsage | null;
}
