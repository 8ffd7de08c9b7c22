import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import type { Config } from '../config.js';
import type { CallRequest, CheckOutputRequest, CompletedProcess, SubprocessRunRequest } from '../schemas/subprocess.js';
import { decodeBytes } from '../spec/encoding.js';
import { SpawnError, type CompletedRun, type RunSpec, type StreamName } from '../runner/index.js';
import { CalledProcessError, encodeValue, TimeoutExpired, type Args, type PyValue } from './exceptions.js';
import { pyReprStr } from './pyrepr.js';

/**
 * CPython's subprocess functions (3.11 Lib/subprocess.py) over the runner:
 * each function below mirrors its Python namesake, and Python's exceptions
 * are domain errors (exceptions.ts) that carry the exception's attributes.
 */

export { CalledProcessError, calledProcessErrorStr, TimeoutExpired } from './exceptions.js';

/** Runs a RunSpec to completion for this request (runSync bound to the request). */
export type SyncRunner = (spec: RunSpec) => Promise<CompletedRun>;

export interface SubprocessContext {
  run: SyncRunner;
  config: Pick<Config, 'syncTimeoutMs' | 'killGraceMs' | 'maxOutputBytes'>;
}

/** A JSON answer plus which captured streams hit the output cap (the route says so in a header). */
export interface Answer<T> {
  body: T;
  truncated: StreamName[];
}


/** The Popen keyword arguments this API exposes. */
interface Popen {
  args: Args;
  shell?: boolean | undefined;
  text?: boolean | undefined;
  input?: string | undefined;
  timeout?: number | undefined;
  cwd?: string | undefined;
  env?: Record<string, string> | undefined;
  stdout: 'PIPE' | 'DEVNULL';
  stderr: 'PIPE' | 'STDOUT' | 'DEVNULL';
}

const SHELL = '/bin/sh';

/** Python's args rule: a string alone is one program (or the shell's command line); shell=True prepends /bin/sh -c. */
export function popenArgv(args: Args, shell: boolean): string[] {
  const list = typeof args === 'string' ? [args] : args;
  return shell ? [SHELL, '-c', ...list] : [...list];
}

/** Universal newlines, as Popen._translate_newlines: \r\n and lone \r become \n. */
export const translateNewlines = (text: string): string => text.replace(/\r\n?/g, '\n');


/** glibc's strerror() for the errors a spawn can meet, as Python's OSError prints them. */
const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  E2BIG: 'Argument list too long',
  ENOEXEC: 'Exec format error',
  EINVAL: 'Invalid argument',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  ETXTBSY: 'Text file busy',
  ENOMEM: 'Cannot allocate memory',
  EMFILE: 'Too many open files',
  ENFILE: 'Too many open files in system',
  EAGAIN: 'Resource temporarily unavailable',
  EIO: 'Input/output error',
};

/** The OSError subclass Python raises for an errno. */
const EXCEPTION: Record<string, string> = {
  ENOENT: 'FileNotFoundError',
  EACCES: 'PermissionError',
  EPERM: 'PermissionError',
  ENOTDIR: 'NotADirectoryError',
  EISDIR: 'IsADirectoryError',
  EAGAIN: 'BlockingIOError',
};

/** Errors of fork() itself: Python reports them without a filename. */
const NO_FILENAME = new Set(['ENOMEM', 'EAGAIN', 'EMFILE', 'ENFILE']);

/** Why chdir(cwd) would fail, or null when it would not. */
async function cwdErrno(cwd: string): Promise<string | null> {
  try {
    if (!(await stat(cwd)).isDirectory()) return 'ENOTDIR';
    await access(cwd, fsConstants.X_OK);
    return null;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? 'ENOENT';
  }
}

/**
 * The runner's SPAWN_FAILED, reworded as the OSError Popen raises in the
 * parent: `[Errno 2] No such file or directory: 'nope'`, naming the cwd when
 * chdir failed and the program otherwise.
 */
async function spawnFailed(err: SpawnError, p: Popen): Promise<SpawnError> {
  let errno = err.errno;
  let filename: string | null = popenArgv(p.args, p.shell ?? false)[0]!;
  if (p.cwd !== undefined) {
    const cwdError = await cwdErrno(p.cwd);
    if (cwdError !== null) {
      errno = cwdError;
      filename = p.cwd;
    }
  }
  if (NO_FILENAME.has(errno)) filename = null;
  const num = (osConstants.errno as Record<string, number>)[errno];
  const head = num === undefined ? `[${errno}]` : `[Errno ${num}]`;
  const detail = `${head} ${STRERROR[errno] ?? errno}${filename === null ? '' : `: ${pyReprStr(filename)}`}`;
  return new SpawnError(errno, detail, { exception: EXCEPTION[errno] ?? 'OSError', filename });
}

// ---- Popen.communicate ---------------------------------------------------------------------------

interface Communicated {
  returncode: number;
  stdout: PyValue;
  stderr: PyValue;
  truncated: StreamName[];
}

/** The RunSpec for a Popen call: Python's argv rule, env= replacing the environment, stdin empty unless input. */
export function toPopenSpec(p: Popen, config: SubprocessContext['config']): RunSpec {
  const captures = p.stdout === 'PIPE' || p.stderr === 'PIPE';
  const spec: RunSpec = {
    argv: popenArgv(p.args, p.shell ?? false),
    // env= is the whole environment; without it Python passes its own, and ours is the server's small base for children.
    envMode: p.env === undefined ? 'add' : 'replace',
    mergeStderr: p.stderr === 'STDOUT',
    killGraceMs: config.killGraceMs,
    // Nothing captured: keep nothing.
    maxOutputBytes: captures ? config.maxOutputBytes : 0,
    timeoutMs: p.timeout === undefined ? config.syncTimeoutMs : Math.max(1, Math.ceil(p.timeout * 1000)),
  };
  if (p.env !== undefined) spec.env = p.env;
  if (p.cwd !== undefined) spec.cwd = p.cwd;
  if (p.input !== undefined) spec.stdin = decodeBytes(p.input, p.text ? 'utf8' : 'base64', 'input');
  return spec;
}

/** Popen(...).communicate(input, timeout), with run()'s kill on timeout. */
async function communicate(ctx: SubprocessContext, p: Popen): Promise<Communicated> {
  const spec = toPopenSpec(p, ctx.config);
  let done: CompletedRun;
  try {
    done = await ctx.run(spec);
  } catch (err) {
    if (err instanceof SpawnError) throw await spawnFailed(err, p);
    throw err;
  }
  const piped = (stream: StreamName) => (stream === 'stdout' ? p.stdout === 'PIPE' : p.stderr === 'PIPE');
  if (done.outcome.timedOut) {
    const partial = (stream: StreamName) => (piped(stream) && done[stream].length > 0 ? done[stream] : null);
    throw new TimeoutExpired(p.args, p.timeout ?? ctx.config.syncTimeoutMs / 1000, partial('stdout'), partial('stderr'));
  }
  const value = (stream: StreamName): PyValue => {
    if (!piped(stream)) return null;
    return p.text ? translateNewlines(done[stream].toString('utf8')) : done[stream];
  };
  const truncated = (['stdout', 'stderr'] as const).filter((s) => piped(s) && done.truncated[s]);
  return { returncode: done.returncode, stdout: value('stdout'), stderr: value('stderr'), truncated };
}

// ---- the module's functions ----------------------------------------------------------------------

/** subprocess.run(). */
async function pyRun(ctx: SubprocessContext, p: Popen, check: boolean): Promise<Communicated> {
  const result = await communicate(ctx, p);
  if (check && result.returncode !== 0) {
    throw new CalledProcessError(result.returncode, p.args, result.stdout, result.stderr, p.text ?? false, result.truncated);
  }
  return result;
}

/** subprocess.run(args, ...) → CompletedProcess. */
export async function run(ctx: SubprocessContext, body: SubprocessRunRequest): Promise<Answer<CompletedProcess>> {
  const pipe = body.capture_output ? 'PIPE' : 'DEVNULL';
  const r = await pyRun(ctx, { ...body, stdout: pipe, stderr: pipe }, body.check ?? false);
  return {
    body: { args: body.args, returncode: r.returncode, stdout: encodeValue(r.stdout), stderr: encodeValue(r.stderr) },
    truncated: r.truncated,
  };
}

/** subprocess.check_output(args, ...) → stdout. */
export async function checkOutput(ctx: SubprocessContext, body: CheckOutputRequest): Promise<Answer<{ output: string }>> {
  const r = await pyRun(ctx, { ...body, stdout: 'PIPE', stderr: body.stderr ?? 'DEVNULL' }, true);
  // Python returns stdout only; a piped stderr lives on in CalledProcessError alone.
  return { body: { output: encodeValue(r.stdout)! }, truncated: r.truncated.filter((s) => s === 'stdout') };
}

/** subprocess.call(args, ...) → returncode; stdout and stderr (the caller's own in Python) are discarded. */
export async function call(ctx: SubprocessContext, body: CallRequest): Promise<Answer<{ returncode: number }>> {
  const r = await communicate(ctx, { ...body, stdout: 'DEVNULL', stderr: 'DEVNULL' });
  return { body: { returncode: r.returncode }, truncated: [] };
}

/** subprocess.getstatusoutput(cmd) → (status, output): shell, text, stderr merged, one trailing newline stripped. */
export async function getstatusoutput(ctx: SubprocessContext, cmd: Args): Promise<Answer<{ status: number; output: string }>> {
  let data: string;
  let status: number;
  let truncated: StreamName[];
  try {
    const r = await pyRun(ctx, { args: cmd, shell: true, text: true, stdout: 'PIPE', stderr: 'STDOUT' }, true);
    data = r.stdout as string;
    truncated = r.truncated;
    status = 0;
  } catch (err) {
    if (!(err instanceof CalledProcessError)) throw err;
    data = err.output as string;
    status = err.returncode;
    truncated = err.truncated;
  }
  if (data.endsWith('\n')) data = data.slice(0, -1);
  return { body: { status, output: data }, truncated };
}

/** subprocess.getoutput(cmd) → output. */
export async function getoutput(ctx: SubprocessContext, cmd: Args): Promise<Answer<{ output: string }>> {
  const r = await getstatusoutput(ctx, cmd);
  return { body: { output: r.body.output }, truncated: r.truncated };
}
