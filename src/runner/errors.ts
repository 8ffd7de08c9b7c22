import { DomainError } from '../errors.js';

/** A process that did not start: nothing ran. `errno` is the system error name (ENOENT, EACCES, EMFILE…), also in the details. */
export abstract class NotStarted extends DomainError {
  constructor(
    readonly errno: string,
    message: string,
    more: Record<string, unknown> = {},
    options: { retryAfter?: number } = {},
  ) {
    super(message, { errno, ...more }, options);
  }
}

/**
 * A process that could not be started, for a reason of the command's (ENOENT, EACCES, E2BIG…).
 * `more` adds facts to the details (python/ words it as Python's OSError, naming the exception).
 */
export class SpawnError extends NotStarted {
  override name = 'SpawnError';
  readonly code = 'SPAWN_FAILED';
}

/**
 * A process that could not be started for want of the server's resources: descriptors (EMFILE,
 * ENFILE), processes (EAGAIN: RLIMIT_NPROC, pid_max) or memory (ENOMEM). Nothing ran; it is
 * transient and says nothing about the command (503 RESOURCE_EXHAUSTED, not 422 SPAWN_FAILED).
 */
export class ResourceExhaustedError extends NotStarted {
  override name = 'ResourceExhaustedError';
  readonly code = 'RESOURCE_EXHAUSTED';
  constructor(errno: string, message: string) {
    super(errno, message, {}, { retryAfter: 1 });
  }
}

const EXHAUSTION = new Set(['EMFILE', 'ENFILE', 'EAGAIN', 'ENOMEM']);

/** True for the errnos that mean "out of descriptors" (the reserve is released for them). */
export const isOutOfDescriptors = (errno: string): boolean => errno === 'EMFILE' || errno === 'ENFILE';

const KNOWN_ERRNO = /^E[A-Z0-9]+$/;

/**
 * Map whatever spawn threw or emitted to a SpawnError (the command could not start) or a
 * ResourceExhaustedError (the server could not start it now), without leaking server paths or stacks.
 */
export function toSpawnError(err: unknown, what: string): SpawnError | ResourceExhaustedError {
  if (err instanceof SpawnError || err instanceof ResourceExhaustedError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e && e.code === 'ERR_INVALID_ARG_VALUE') {
    return new SpawnError('EINVAL', `${what}: arguments, environment and cwd must not contain NUL bytes`);
  }
  if (e && e.code === 'ERR_INVALID_ARG_TYPE') {
    return new SpawnError('EINVAL', `${what}: invalid argument`);
  }
  const errno = e && typeof e.code === 'string' && KNOWN_ERRNO.test(e.code) ? e.code : 'EIO';
  // The child could not enter its cwd (as the run-as user, who may lack the rights root had when it was checked).
  if (e && e.syscall === 'chdir') return new SpawnError(errno, `${what}: cannot enter its cwd: ${errno === 'EACCES' ? 'permission denied' : describeErrno(errno)}`);
  if (EXHAUSTION.has(errno)) return new ResourceExhaustedError(errno, `${what} could not be started now: the server is out of resources (${describeErrno(errno)}); retry later`);
  return new SpawnError(errno, `${what}: ${describeErrno(errno)}`);
}

const DESCRIPTIONS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied (not executable)',
  E2BIG: 'argument list too long',
  ENOTDIR: 'not a directory',
  EINVAL: 'invalid argument',
  EAGAIN: 'resource temporarily unavailable',
  ENOMEM: 'out of memory',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in the system',
  ENOEXEC: 'exec format error',
  EPERM: 'operation not permitted',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
};

export const describeErrno = (errno: string): string => DESCRIPTIONS[errno] ?? errno;
