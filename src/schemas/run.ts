import { z } from 'zod';
import { Encoding, IsoTime } from './common.js';

/** The longest timeout a request may ask for: one week. */
export const MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000;

export const EnvMap = z
  .record(
    z.string().min(1).max(4096).regex(/^[^=]+$/, 'environment variable names must not contain "="'),
    z.string().max(1 << 20),
  )
  .meta({ description: 'Variables added to the small base environment (PATH, HOME, LANG…).' });

/** Per-run resource limits, applied with prlimit(1); a policy rule's limits are ceilings over these. */
export const ResourceLimits = z
  .strictObject({
    cpuSeconds: z.int().min(1).max(Number.MAX_SAFE_INTEGER).optional().meta({ description: 'RLIMIT_CPU: CPU seconds; the kernel sends SIGXCPU, then SIGKILL.' }),
    memoryBytes: z.int().min(1).max(Number.MAX_SAFE_INTEGER).optional().meta({ description: 'RLIMIT_AS: address space in bytes.' }),
    fileSizeBytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional().meta({ description: 'RLIMIT_FSIZE: largest file the process may write (SIGXFSZ beyond).' }),
    openFiles: z.int().min(1).max(1 << 30).optional().meta({ description: 'RLIMIT_NOFILE: open file descriptors.' }),
    processes: z.int().min(1).max(1 << 30).optional().meta({ description: "RLIMIT_NPROC: processes of the run's user (does not bind root)." }),
  })
  .meta({ id: 'ResourceLimits' });
export type ResourceLimits = z.infer<typeof ResourceLimits>;

/** A terminal's window size in character cells (a resize frame's too). */
export const TtySize = z
  .strictObject({
    cols: z.int().min(1).max(10_000).meta({ description: 'Columns.' }),
    rows: z.int().min(1).max(10_000).meta({ description: 'Rows.' }),
  })
  .meta({ id: 'TtySize' });

export const TtyRequest = z.union([z.boolean(), TtySize]).meta({
  description:
    'Run on a new pseudo-terminal (true: 80x24, or this size): the process leads its own session with the terminal as its ' +
    'controlling terminal, TERM defaults to xterm-256color, output is one stream (stdout; stderr merged, as on a terminal), ' +
    'and programs write line by line, with colors. stdin bytes are typed at the terminal (no end of input: send 0x04 for ' +
    "Ctrl-D); a job's stdin is streamed (implied). Needs the native spawner (else 422 SPAWN_FAILED, errno ENOTSUP) and a " +
    'policy rule with "tty": true. docs/tty.md.',
});

export const commandSpecShape = {
  argv: z.array(z.string()).min(1).max(65536).optional().meta({ description: 'Program and arguments, run without a shell.' }),
  command: z.string().min(1).optional().meta({ description: 'A shell command line, run with /bin/sh -c.' }),
  cwd: z.string().min(1).max(4096).optional(),
  env: EnvMap.optional(),
  stdin: z
    .union([z.string(), z.strictObject({ stream: z.literal(true) })])
    .optional()
    .meta({ description: 'Bytes sent to stdin, then EOF; {"stream":true} (jobs only) keeps it open for WebSocket writers.' }),
  stdinEncoding: Encoding.optional(),
  encoding: Encoding.optional().meta({ description: 'How stdout and stderr are returned (default utf8).' }),
  stderr: z.enum(['pipe', 'merge']).optional().meta({ description: '`merge` interleaves stderr into stdout, as 2>&1.' }),
  timeoutMs: z.int().min(1).max(MAX_TIMEOUT_MS).optional(),
  killGraceMs: z.int().min(0).max(600_000).optional(),
  maxOutputBytes: z.int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  limits: ResourceLimits.optional().meta({ description: 'Resource limits for the process, applied with prlimit (util-linux).' }),
  tty: TtyRequest.optional(),
};

type SpecLike = { argv?: unknown; command?: unknown };

/** Exactly one of argv and command. */
export const exactlyOneProgram = (spec: SpecLike, ctx: z.RefinementCtx) => {
  if ((spec.argv === undefined) === (spec.command === undefined)) {
    ctx.addIssue({ code: 'custom', message: 'give exactly one of "argv" and "command"', path: [] });
  }
};

export const CommandSpec = z
  .strictObject(commandSpecShape)
  .superRefine(exactlyOneProgram)
  .meta({ id: 'CommandSpec', examples: [{ argv: ['ls', '-l', '/tmp'], timeoutMs: 5000 }] });
export type CommandSpec = z.infer<typeof CommandSpec>;

export const RunRequest = z
  .strictObject({
    ...commandSpecShape,
    check: z.boolean().optional().meta({ description: 'Answer 422 COMMAND_FAILED on a non-zero returncode (422 TIMEOUT_EXPIRED on timeout).' }),
  })
  .superRefine(exactlyOneProgram)
  .meta({ id: 'RunRequest', examples: [{ argv: ['uname', '-a'], timeoutMs: 5000 }, { command: 'sort | uniq -c', stdin: 'b\na\nb\n', stderr: 'merge' }] });
export type RunRequest = z.infer<typeof RunRequest>;

/** What the kernel counted for the run (wait4's rusage of the process and the children it waited for). */
export const ResourceUsage = z
  .object({
    userCpuMs: z.int().min(0).meta({ description: 'CPU time in user mode (rounded to the millisecond).' }),
    systemCpuMs: z.int().min(0).meta({ description: 'CPU time in the kernel (rounded to the millisecond).' }),
    maxRssBytes: z.int().min(0).meta({ description: 'Peak resident set size of the process (or of the largest child it waited for).' }),
  })
  .meta({ id: 'ResourceUsage' });

export const TruncatedReason = z
  .enum(['max_output', 'disk_full', 'write_failed'])
  .meta({
    id: 'TruncatedReason',
    description:
      'Why bytes of a stream were dropped: max_output (the maxOutputBytes cap), disk_full (EXECD_DATA_DIR\'s filesystem is full or over quota), ' +
      'write_failed (the output file could not be written for another reason). The process is never stopped for it.',
  });

export const RunStatus = {
  exitCode: z.int().nullable().meta({ description: 'Null when a signal ended the process.' }),
  signal: z.string().nullable().meta({ description: 'Signal name such as "SIGKILL", or null.' }),
  returncode: z.int().meta({ description: "Python's view: the exit code, or minus the signal number." }),
  truncated: z.object({ stdout: z.boolean(), stderr: z.boolean() }),
  truncatedReason: z
    .object({ stdout: TruncatedReason.nullable(), stderr: TruncatedReason.nullable() })
    .meta({ description: 'Why each stream was truncated, null when it was not. A synchronous run keeps its output in memory: only max_output.' }),
  timedOut: z.boolean(),
  durationMs: z.int(),
  pid: z.int(),
  startedAt: IsoTime,
  finishedAt: IsoTime,
  usage: ResourceUsage.nullable().meta({ description: 'CPU time and peak memory from the kernel; null when the spawner cannot tell (child_process).' }),
  uid: z.int().meta({ description: 'The uid the command ran as.' }),
  gid: z.int().meta({ description: 'The gid the command ran as (no supplementary groups).' }),
};

export const RunResult = z
  .object({
    ...RunStatus,
    stdout: z.string(),
    stderr: z.string(),
    encoding: Encoding,
  })
  .meta({ id: 'RunResult' });
export type RunResult = z.infer<typeof RunResult>;
