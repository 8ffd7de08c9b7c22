import type { Config } from '../config.js';
import { InvalidInput } from '../errors.js';
import type { CommandSpec } from '../schemas/run.js';
import { decodeBytes } from './encoding.js';
import type { RunSpec } from '../runner/index.js';

/** A terminal's size when a request says only `"tty": true`. */
export const DEFAULT_TTY_SIZE = { cols: 80, rows: 24 } as const;

export interface SpecDefaults {
  timeoutMs: number | undefined;
  allowStreamStdin: boolean;
}

/** Translate an API CommandSpec into the runner's RunSpec, enforcing the server's bounds. */
export function toRunSpec(body: CommandSpec, config: Pick<Config, 'maxOutputBytes' | 'killGraceMs'>, defaults: SpecDefaults): RunSpec {
  let stdin: RunSpec['stdin'];
  if (typeof body.stdin === 'string') stdin = decodeBytes(body.stdin, body.stdinEncoding ?? 'utf8', 'stdin');
  else if (body.stdin) {
    if (!defaults.allowStreamStdin) {
      throw new InvalidInput('stdin {"stream":true} is only for jobs: a synchronous run has no one to write to it', [
        { in: 'body', path: '/stdin', message: 'streaming stdin is only for jobs' },
      ]);
    }
    stdin = 'stream';
  }
  const maxOutputBytes = body.maxOutputBytes ?? config.maxOutputBytes;
  if (maxOutputBytes > config.maxOutputBytes) {
    throw new InvalidInput(`maxOutputBytes must be at most ${config.maxOutputBytes} on this server`, [
      { in: 'body', path: '/maxOutputBytes', message: `must be at most ${config.maxOutputBytes}` },
    ]);
  }
  const spec: RunSpec = {
    envMode: 'add',
    mergeStderr: body.stderr === 'merge',
    killGraceMs: body.killGraceMs ?? config.killGraceMs,
    maxOutputBytes,
  };
  if (body.argv) spec.argv = body.argv;
  if (body.command !== undefined) spec.command = body.command;
  if (body.cwd !== undefined) spec.cwd = body.cwd;
  if (body.env) spec.env = body.env;
  if (body.limits && Object.keys(body.limits).length > 0) spec.limits = body.limits;
  if (body.tty) {
    spec.tty = body.tty === true ? { ...DEFAULT_TTY_SIZE } : { cols: body.tty.cols, rows: body.tty.rows };
    spec.mergeStderr = true; // one stream, as on a terminal
    // A job's terminal is typed at over its WebSocket: stdin streaming is implied.
    if (stdin === undefined && defaults.allowStreamStdin) stdin = 'stream';
  }
  if (stdin !== undefined) spec.stdin = stdin;
  // A job's timeoutMs 0 asks for none (a policy rule's maxTimeoutMs still caps it).
  const timeoutMs = body.timeoutMs ?? defaults.timeoutMs;
  if (timeoutMs !== undefined && timeoutMs > 0) spec.timeoutMs = timeoutMs;
  return spec;
}

/**
 * A job's RunSpec: the jobs' default timeout (EXECD_JOB_TIMEOUT_MS, 0 for none) and
 * streaming stdin allowed. Written once for both ends of a job: the submit route
 * translates to admit it, and the worker translates the stored spec again when the
 * job starts (a Redis worker may be another process), then applies the grant.
 */
export function toJobRunSpec(body: CommandSpec, config: Pick<Config, 'maxOutputBytes' | 'killGraceMs' | 'jobTimeoutMs'>): RunSpec {
  return toRunSpec(body, config, { timeoutMs: config.jobTimeoutMs, allowStreamStdin: true });
}
