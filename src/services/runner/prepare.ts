// The checks below stat synchronously: a stat of a cached path takes microseconds, while a
// thread-pool round trip took 0.3-3 ms under load (a third of a /bin/true run's server time).
import { accessSync, constants, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { SpawnError } from './errors.js';
import type { SpawnOptions } from './spawn.js';
import type { ResourceLimits, RunSpec } from './types.js';

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
  return { ...base, ...spec.env, ...ctx.marker };
}

const hasNul = (s: string) => s.includes('\0');

// The checks below stat synchronously on purpose: a few cached-dentry lookups cost
// microseconds, while a thread-pool round trip each cost ~1.5 ms per run under load.
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

/**
 * Resolve a program the way execvp does: a name with a slash is taken as a
 * path (relative to cwd), otherwise each PATH entry is tried in order.
 */
export async function resolveExecutable(name: string, searchPath: string, cwd: string): Promise<string> {
  if (name === '') throw new SpawnError('ENOENT', 'argv[0] is empty');
  if (name.includes('/')) {
    const full = isAbsolute(name) ? name : resolve(cwd, name);
    const r = await isExecutableFile(full);
    if (r !== 'ok') throw new SpawnError(r, `${JSON.stringify(name)}: ${r === 'ENOENT' ? 'no such file' : 'permission denied'}`);
    return full;
  }
  let sawEacces = false;
  for (const dir of searchPath.split(delimiter)) {
    const full = join(resolve(cwd, dir || '.'), name);
    const r = await isExecutableFile(full);
    if (r === 'ok') return full;
    if (r === 'EACCES') sawEacces = true;
  }
  const errno = sawEacces ? 'EACCES' : 'ENOENT';
  throw new SpawnError(errno, `${JSON.stringify(name)}: ${sawEacces ? 'permission denied' : 'command not found'}`);
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
    return { file: SHELL, argv: [SHELL, '-c', spec.command], cwd, env, stdin, mergeStderr: spec.mergeStderr, uid: spec.uid, gid: spec.gid };
  }

  const argv = spec.argv!;
  const badArg = argv.findIndex(hasNul);
  if (badArg >= 0) throw new SpawnError('EINVAL', `argv[${badArg}] contains a NUL byte`);
  const file = await resolveExecutable(argv[0]!, env.PATH ?? DEFAULT_SEARCH_PATH, cwd);
  return { file, argv, cwd, env, stdin, mergeStderr: spec.mergeStderr, uid: spec.uid, gid: spec.gid };
}
