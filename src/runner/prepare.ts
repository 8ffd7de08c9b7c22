import { accessSync, constants, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { homedir, hostname } from 'node:os';
import { basename, delimiter, dirname, isAbsolute, join, normalize } from 'node:path';
import { SpawnError } from './errors.js';
import type { SpawnOptions } from './spawn.js';
import type { CheckedProgram, ResourceLimits, RunSpec } from './types.js';

const SHELL = '/bin/sh';
/** Python's os.defpath: the search path when the environment has no PATH. */
export const DEFAULT_SEARCH_PATH = '/bin:/usr/bin';

export interface PrepareContext {
  /** PATH of the base environment. */
  childPath: string;
  /** Extra variables every child gets (e.g. the instance marker). */
  marker?: Record<string, string>;
  /** Default cwd when the spec gives none. */
  defaultCwd?: string;
}

/**
 * The child's environment: a small base plus the request's variables, never
 * the server's own (`env` mode 'replace' is Python's `env=`: exactly what was given).
 */
export function buildEnv(spec: RunSpec, ctx: PrepareContext): Record<string, string> {
  const base: Record<string, string> =
    spec.envMode === 'replace'
      ? {}
      : { PATH: ctx.childPath, HOME: spec.home ?? homedir(), LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', SHELL, TERM: 'dumb' };
  // On a terminal, what most terminal emulators (xterm.js among them) are; the request's TERM wins.
  if (spec.tty) base.TERM = TTY_TERM;
  return { ...base, ...spec.env, ...ctx.marker };
}

/** TERM on a pseudo-terminal unless the request sets it. */
export const TTY_TERM = 'xterm-256color';

const hasNul = (s: string) => s.includes('\0');

// The checks below stat synchronously on purpose: a few cached-dentry lookups are far
// cheaper than a thread-pool round trip each under load (docs/benchmarks.md).
// They stay async in signature so a slower check (e.g. a network filesystem) can return.

/**
 * Paths that passed a check within the last second. Runs mostly use the same few cwds and
 * programs, so a busy server skips three system calls and two Stats objects per run. Only
 * passes are kept: a path that goes bad within the second still fails in the child (chdir or
 * execve) and is answered SPAWN_FAILED with the kernel's errno, only not in this file's words.
 */
const PASSED_TTL_MS = 1000;
const PASSED_MAX = 256;
const passed = new Map<string, number>();

function passedRecently(key: string): boolean {
  const until = passed.get(key);
  if (until === undefined) return false;
  if (until > performance.now()) return true;
  passed.delete(key);
  return false;
}

function remember(key: string): void {
  if (passed.size >= PASSED_MAX) passed.clear();
  passed.set(key, performance.now() + PASSED_TTL_MS);
}

async function checkCwd(cwd: string): Promise<void> {
  if (passedRecently(`d${cwd}`)) return;
  let st;
  try {
    st = statSync(cwd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'ENOENT';
    throw new SpawnError(code, `cwd ${JSON.stringify(cwd)}: ${code === 'ENOENT' ? 'no such directory' : code}`);
  }
  if (!st.isDirectory()) throw new SpawnError('ENOTDIR', `cwd ${JSON.stringify(cwd)}: not a directory`);
  remember(`d${cwd}`);
}

async function isExecutableFile(path: string): Promise<'ok' | 'ENOENT' | 'EACCES'> {
  if (passedRecently(`x${path}`)) return 'ok';
  try {
    // A PATH search misses in most directories: no exception for those (an fs error is
    // built with a message and a stack trace, then thrown and caught: per directory, per run).
    const st = statSync(path, { throwIfNoEntry: false });
    if (st === undefined) return 'ENOENT';
    if (!st.isFile()) return 'EACCES';
    accessSync(path, constants.X_OK);
    remember(`x${path}`);
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EACCES' ? 'EACCES' : 'ENOENT';
  }
}

const DOT_DOT = /(?:^|\/)\.\.(?:\/|$)/;

/**
 * An absolute path as the kernel reaches it: ".." after a symlink leads up from the link's
 * target, where path.resolve would only drop the link's name (so "link/../ok" is the file
 * beside the target, not beside the link). A path the kernel cannot walk comes back as it was:
 * the check that follows then fails with the kernel's own errno.
 */
function physicalPath(path: string): string {
  const full = isAbsolute(path) ? path : `${process.cwd()}/${path}`;
  if (!DOT_DOT.test(full)) return normalize(full);
  const name = basename(full);
  try {
    return name === '..' || name === '.' ? realpathSync.native(full) : join(realpathSync.native(dirname(full)), name);
  } catch {
    return full;
  }
}

/**
 * Resolve a program the way execvp does: a name with a slash is taken as a
 * path (relative to cwd), otherwise each PATH entry is tried in order (a
 * relative entry, "." or "" included, relative to cwd). The result is absolute
 * and physical (physicalPath): the file the kernel would execute from that cwd.
 */
export async function resolveExecutable(name: string, searchPath: string, cwd: string): Promise<string> {
  if (name === '') throw new SpawnError('ENOENT', 'argv[0] is empty');
  if (name.includes('/')) {
    const full = physicalPath(isAbsolute(name) ? name : `${cwd}/${name}`);
    const r = await isExecutableFile(full);
    if (r !== 'ok') throw new SpawnError(r, `${JSON.stringify(name)}: ${r === 'ENOENT' ? 'no such file' : 'permission denied'}`);
    return full;
  }
  let sawEacces = false;
  for (const dir of searchPath.split(delimiter)) {
    const full = physicalPath(`${isAbsolute(dir) ? dir : `${cwd}/${dir || '.'}`}/${name}`);
    const r = await isExecutableFile(full);
    if (r === 'ok') return full;
    if (r === 'EACCES') sawEacces = true;
  }
  const errno = sawEacces ? 'EACCES' : 'ENOENT';
  throw new SpawnError(errno, `${JSON.stringify(name)}: ${sawEacces ? 'permission denied' : 'command not found'}`);
}

let view: string | undefined;

/**
 * Where a device and inode number name a file: this kernel's boot and this process's mount
 * namespace. A job checked on one node of a Redis cluster may start on another host (or in
 * another container), where the same numbers mean nothing.
 */
export function filesystemView(): string {
  if (view === undefined) {
    let boot: string;
    let mounts = '';
    try {
      boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    } catch {
      boot = hostname();
    }
    try {
      mounts = readlinkSync('/proc/self/ns/mnt');
    } catch {
      // no /proc: the boot id (or host name) alone
    }
    view = `${boot}/${mounts}`;
  }
  return view;
}

function statProgram(file: string, name: string) {
  try {
    return statSync(file, { bigint: true, throwIfNoEntry: false });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new SpawnError(code, `${JSON.stringify(name)}: ${file}: ${code}`);
  }
}

/** The identity of a resolved program file now (stat follows symlinks, as execve does). */
export function checkProgram(file: string, name: string): CheckedProgram {
  const st = statProgram(file, name);
  if (st === undefined) throw new SpawnError('ENOENT', `${JSON.stringify(name)}: no such file`);
  return { file, dev: String(st.dev), ino: String(st.ino), view: filesystemView() };
}

/**
 * The checked program's path, when it still names the file the policy checked (same device and
 * inode); a SpawnError otherwise, so a file renamed over it between a job's submission and its
 * start never runs. Where the numbers mean nothing (another host), the checked path runs.
 */
function verifyProgram(p: CheckedProgram, name: string): string {
  if (p.view !== filesystemView()) return p.file;
  const st = statProgram(p.file, name);
  if (st === undefined) {
    throw new SpawnError('ENOENT', `${JSON.stringify(name)}: ${p.file} is gone since the command policy checked it, so nothing runs`);
  }
  if (String(st.dev) !== p.dev || String(st.ino) !== p.ino) {
    throw new SpawnError('ESTALE', `${JSON.stringify(name)}: ${p.file} is no longer the file the command policy checked (another file took its place), so it does not run`);
  }
  return p.file;
}

/** Turn a RunSpec into what a Spawner needs, checking what the OS would refuse; limits wrap it in prlimit. */
export async function prepareSpawn(spec: RunSpec, ctx: PrepareContext): Promise<SpawnOptions> {
  const options = await prepareProgram(spec, ctx);
  return spec.limits ? withLimits(options, spec.limits, ctx) : options;
}

const PRLIMIT_FLAGS: Array<[keyof ResourceLimits, string]> = [
  ['cpuSeconds', '--cpu'],
  ['memoryBytes', '--as'],
  ['fileSizeBytes', '--fsize'],
  ['openFiles', '--nofile'],
  ['processes', '--nproc'],
];

let prlimitPath: Promise<string> | undefined;

/**
 * Run the program under prlimit(1) (util-linux): `prlimit --cpu=N … -- file args`.
 * prlimit sets soft and hard limits on itself, then execs the program in the
 * same process (same pid and process group). The program's argv[0] becomes
 * its resolved path. RLIMIT_NPROC does not bind root: run as another user.
 */
async function withLimits(options: SpawnOptions, limits: ResourceLimits, ctx: PrepareContext): Promise<SpawnOptions> {
  const flags = PRLIMIT_FLAGS.filter(([k]) => limits[k] !== undefined).map(([k, flag]) => `${flag}=${limits[k]}`);
  if (flags.length === 0) return options;
  prlimitPath ??= resolveExecutable('prlimit', ctx.childPath, '/').catch((err) => {
    prlimitPath = undefined;
    throw err;
  });
  let file: string;
  try {
    file = await prlimitPath;
  } catch {
    throw new SpawnError('ENOENT', 'resource limits need prlimit (util-linux), which is not installed on this server');
  }
  return { ...options, file, argv: ['prlimit', ...flags, '--', options.file, ...options.argv.slice(1)] };
}

async function prepareProgram(spec: RunSpec, ctx: PrepareContext): Promise<SpawnOptions> {
  const env = buildEnv(spec, ctx);
  const cwd = spec.cwd ?? ctx.defaultCwd ?? homedir();
  for (const [k, v] of Object.entries(env)) {
    if (hasNul(k) || hasNul(v)) throw new SpawnError('EINVAL', `environment variable ${JSON.stringify(k.replaceAll('\0', '\\0'))} contains a NUL byte`);
  }
  if (hasNul(cwd)) throw new SpawnError('EINVAL', 'cwd contains a NUL byte');
  await checkCwd(cwd);
  const stdin = spec.stdin === undefined ? 'ignore' : 'pipe';

  if (spec.command !== undefined) {
    if (hasNul(spec.command)) throw new SpawnError('EINVAL', 'command contains a NUL byte');
    // stderr merge: the spawner dup2s one pipe onto fds 1 and 2 (child_process through a fixed shell script).
    return { file: SHELL, argv: [SHELL, '-c', spec.command], cwd, env, stdin, mergeStderr: spec.mergeStderr, uid: spec.uid, gid: spec.gid, tty: spec.tty };
  }

  const argv = spec.argv!;
  const badArg = argv.findIndex(hasNul);
  if (badArg >= 0) throw new SpawnError('EINVAL', `argv[${badArg}] contains a NUL byte`);
  // The file the policy checked, if it checked one (still the same file: verifyProgram), else argv[0] resolved now.
  const file = spec.program
    ? verifyProgram(spec.program, argv[0]!)
    : await resolveExecutable(argv[0]!, env.PATH ?? DEFAULT_SEARCH_PATH, cwd);
  return { file, argv, cwd, env, stdin, mergeStderr: spec.mergeStderr, uid: spec.uid, gid: spec.gid, tty: spec.tty };
}
