import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { SpawnError } from './errors.js';
import type { SpawnOptions } from './spawn.js';
import type { RunSpec } from './types.js';

const SHELL = '/bin/sh';
/** Python's os.defpath: the search path when the environment has no PATH. */
const DEFAULT_SEARCH_PATH = '/bin:/usr/bin';

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
      : { PATH: ctx.childPath, HOME: homedir(), LANG: 'C.UTF-8', LC_ALL: 'C.UTF-8', SHELL, TERM: 'dumb' };
  return { ...base, ...spec.env, ...ctx.marker };
}

const hasNul = (s: string) => s.includes('\0');

async function checkCwd(cwd: string): Promise<void> {
  let st;
  try {
    st = await stat(cwd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'ENOENT';
    throw new SpawnError(code, `cwd ${JSON.stringify(cwd)}: ${code === 'ENOENT' ? 'no such directory' : code}`);
  }
  if (!st.isDirectory()) throw new SpawnError('ENOTDIR', `cwd ${JSON.stringify(cwd)}: not a directory`);
}

async function isExecutableFile(path: string): Promise<'ok' | 'ENOENT' | 'EACCES'> {
  try {
    const st = await stat(path);
    if (!st.isFile()) return 'EACCES';
    await access(path, constants.X_OK);
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

/** Turn a RunSpec into what a Spawner needs, checking what the OS would refuse. */
export async function prepareSpawn(spec: RunSpec, ctx: PrepareContext): Promise<SpawnOptions> {
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
    // stderr merge: an outer shell dups fd 2 onto fd 1 and execs the real one.
    const argv = spec.mergeStderr
      ? [SHELL, '-c', `exec ${SHELL} -c "$0" 2>&1`, spec.command]
      : [SHELL, '-c', spec.command];
    return { file: SHELL, argv, cwd, env, stdin, uid: spec.uid, gid: spec.gid };
  }

  const argv = spec.argv!;
  const badArg = argv.findIndex(hasNul);
  if (badArg >= 0) throw new SpawnError('EINVAL', `argv[${badArg}] contains a NUL byte`);
  const file = await resolveExecutable(argv[0]!, env.PATH ?? DEFAULT_SEARCH_PATH, cwd);
  if (spec.mergeStderr) {
    // child_process cannot dup2 one pipe onto fds 1 and 2, so a fixed shell script does it and
    // execs the program: no shell parsing of user input, argv travels as positional parameters
    // (argv[0] as given: the shell finds it on the same PATH we just checked). The shell would
    // add PWD to the environment; it is dropped unless the request set it.
    const script = `${'PWD' in env ? '' : 'unset PWD; '}exec "$0" "$@" 2>&1`;
    const program = argv[0]!.startsWith('-') ? file : argv[0]!; // never let exec read it as an option
    return { file: SHELL, argv: [SHELL, '-c', script, program, ...argv.slice(1)], cwd, env, stdin, uid: spec.uid, gid: spec.gid };
  }
  return { file, argv, cwd, env, stdin, uid: spec.uid, gid: spec.gid };
}
