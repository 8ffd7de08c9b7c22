/** A process that could not be started; `errno` is the system error name (ENOENT, EACCES, E2BIG…). */
export class SpawnError extends Error {
  override name = 'SpawnError';
  constructor(
    readonly errno: string,
    message: string,
  ) {
    super(message);
  }
}

const KNOWN_ERRNO = /^E[A-Z0-9]+$/;

/** Map whatever spawn threw or emitted to a SpawnError without leaking server paths or stacks. */
export function toSpawnError(err: unknown, what: string): SpawnError {
  if (err instanceof SpawnError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e && e.code === 'ERR_INVALID_ARG_VALUE') {
    return new SpawnError('EINVAL', `${what}: arguments, environment and cwd must not contain NUL bytes`);
  }
  if (e && e.code === 'ERR_INVALID_ARG_TYPE') {
    return new SpawnError('EINVAL', `${what}: invalid argument`);
  }
  const errno = e && typeof e.code === 'string' && KNOWN_ERRNO.test(e.code) ? e.code : 'EIO';
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
  ENOEXEC: 'exec format error',
  EPERM: 'operation not permitted',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
};

export const describeErrno = (errno: string): string => DESCRIPTIONS[errno] ?? errno;
