import { spawn as cpSpawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { describeErrno, SpawnError } from './errors.js';
import { descriptorsFree } from './fd-reserve.js';
import type { StreamName } from './output.js';
import type { TtySize } from './types.js';

/**
 * The spawn step, behind a small interface so a faster spawner (posix_spawn
 * from a small address space, native.ts) can replace Node's fork-based child_process.
 */
export interface SpawnOptions {
  /** Program to execute: an absolute path, or a name searched on env.PATH. */
  file: string;
  /** Full argv, argv[0] included. */
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  /** 'pipe' opens a pipe to the child's stdin; 'ignore' gives it /dev/null. */
  stdin: 'pipe' | 'ignore';
  /**
   * Interleave stderr into stdout, as `2>&1`: fds 1 and 2 of the child are the same pipe
   * and the handle's stderr stream is empty. A spawner that can dup2 does it directly.
   */
  mergeStderr?: boolean | undefined;
  uid?: number | undefined;
  gid?: number | undefined;
  /** A pseudo-terminal of this size on fds 0-2 (stdin and mergeStderr are then moot): native spawner only. */
  tty?: TtySize | undefined;
}

/** What the kernel counted for a process and the children it waited for (wait4's rusage). */
export interface ResourceUsage {
  /** CPU time in user mode, whole milliseconds. */
  userCpuMs: number;
  /** CPU time in the kernel, whole milliseconds. */
  systemCpuMs: number;
  /** Peak resident set size. */
  maxRssBytes: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Null or absent when the spawner cannot tell (child_process). */
  usage?: ResourceUsage | null;
}

/** A child's stdout and stderr being read (ChildHandle.readOutput). */
export interface ChildOutput {
  /** Resolves once both pipes are closed: the writers are gone (EOF), an error, or destroy(). Never rejects. */
  closed: Promise<void>;
  /** True once both pipes are closed (`closed` has resolved or is about to): nothing to wait for. */
  readonly ended?: boolean;
  /** Stop reading now and close the pipes (a grandchild may hold them open forever); no chunk comes after it. */
  destroy(): void;
}

export interface ChildHandle {
  pid: number;
  stdin: Writable | null;
  /**
   * Start reading stdout and stderr (call it once, in the same turn as the spawn resolved):
   * each chunk in order per stream. A merged stderr sends nothing on 'stderr'.
   */
  readOutput(onChunk: (stream: StreamName, chunk: Buffer) => void): ChildOutput;
  /** Resolves once the process has exited and been reaped. */
  exited: Promise<ExitStatus>;
  /** On a pseudo-terminal: set its window size (the kernel sends SIGWINCH); false once the terminal is closed. */
  resize?(size: TtySize): boolean;
  /**
   * On a pseudo-terminal: close it, as a terminal window closes: the kernel hangs it up (SIGHUP to the
   * session's foreground group and leader); output written after that is lost.
   */
  hangup?(): void;
}

/** readOutput over two Node streams (child_process). */
export function streamOutput(stdout: Readable, stderr: Readable, onChunk: (stream: StreamName, chunk: Buffer) => void): ChildOutput {
  const pump = (stream: Readable, name: StreamName) => {
    stream.on('data', (chunk: Buffer) => onChunk(name, chunk));
    return once(stream, 'close').then(
      () => undefined,
      () => undefined,
    );
  };
  const closed = Promise.all([pump(stdout, 'stdout'), pump(stderr, 'stderr')]).then(() => undefined);
  return {
    closed,
    destroy() {
      stdout.destroy();
      stderr.destroy();
    },
  };
}

export interface Spawner {
  readonly name: string;
  /** It can start a child on a pseudo-terminal (SpawnOptions.tty). */
  readonly tty?: boolean;
  /** Rejects with the spawn error (err.code = errno name) when the process cannot start. */
  spawn(options: SpawnOptions): Promise<ChildHandle>;
}

const SHELL = '/bin/sh';

/**
 * child_process cannot dup2 one pipe onto fds 1 and 2, so for a merge a fixed shell script
 * does it and execs the program: no shell parsing of user input, argv travels as positional
 * parameters (argv[0] as given: the shell finds it on the PATH prepare.ts checked). The shell
 * would add PWD to the environment; it is dropped unless the request set it.
 */
export function mergeTrampoline(options: SpawnOptions): Pick<SpawnOptions, 'file' | 'argv'> {
  const script = `${'PWD' in options.env ? '' : 'unset PWD; '}exec "$0" "$@" 2>&1`;
  return { file: SHELL, argv: [SHELL, '-c', script, programOf(options), ...options.argv.slice(1)] };
}

/** argv[0] as the shell's exec takes it: never let exec read it as an option. */
function programOf(options: SpawnOptions): string {
  const argv0 = options.argv[0]!;
  return argv0.startsWith('-') || argv0 === '' ? options.file : argv0;
}

/**
 * Run-as through child_process: libuv enters the cwd *before* it drops to the run-as user, so a
 * directory only root can reach would be entered with root's rights. Here the child starts in `/`
 * as the run-as user, and a fixed shell script enters the cwd (`cd -P`: the kernel's chdir, no
 * logical `..`), with that user's rights, then execs the program (merging stderr if asked). A cwd
 * it cannot enter is reported on fd 3 (a pipe of ours, closed at the exec) and becomes SPAWN_FAILED
 * with an errno, never an exit status; nothing of the command ran. argv travels as positional
 * parameters; the PWD and OLDPWD cd sets are put back as the request had them (or unset).
 */
export function identityFirstTrampoline(options: SpawnOptions): Pick<SpawnOptions, 'file' | 'argv' | 'cwd'> {
  const keep: string[] = [];
  let script = 'cd -P -- "$0" 2>/dev/null || { printf x >&3; exit 127; }; ';
  for (const name of ['PWD', 'OLDPWD']) {
    if (name in options.env) {
      script += `${name}=$1; export ${name}; shift; `;
      keep.push(options.env[name]!);
    } else script += `unset ${name}; `;
  }
  script += `exec "$@"${options.mergeStderr ? ' 2>&1' : ''} 3>&-`;
  return { file: SHELL, argv: [SHELL, '-c', script, resolvePath(options.cwd), ...keep, programOf(options), ...options.argv.slice(1)], cwd: '/' };
}

/** Why the run-as user could not enter `cwd`, as root sees it now. */
function cwdRefused(cwd: string): SpawnError {
  let errno = 'EACCES';
  try {
    const st = statSync(cwd, { throwIfNoEntry: false });
    if (st === undefined) errno = 'ENOENT';
    else if (!st.isDirectory()) errno = 'ENOTDIR';
  } catch (err) {
    errno = (err as NodeJS.ErrnoException).code ?? 'EACCES';
  }
  return new SpawnError(errno, `cwd ${JSON.stringify(cwd)}: the run-as user cannot enter it: ${errno === 'EACCES' ? 'permission denied' : describeErrno(errno)}`);
}

/**
 * child_process cannot give a child a controlling terminal (setsid + TIOCSCTTY between fork and exec):
 * a terminal needs the native spawner. 422 SPAWN_FAILED, errno ENOTSUP, before anything ran.
 */
export const ttyUnsupported = () =>
  new SpawnError('ENOTSUP', 'a terminal ("tty") needs the native spawner (EXECD_SPAWNER=native or auto with the native spawner built); this server spawns with child_process');

/** Refuse a terminal the spawner cannot give (422 SPAWN_FAILED ENOTSUP): a job is refused at its submission, not at its start. */
export function checkTtySupport(spawner: Pick<Spawner, 'tty'>, spec: { tty?: unknown }): void {
  if (spec.tty && !spawner.tty) throw ttyUnsupported();
}

/** Spawner over Node's child_process (libuv fork + exec). Every child leads its own process group. */
export const childProcessSpawner: Spawner = {
  name: 'child_process',
  spawn(options) {
    if (options.tty) return Promise.reject(ttyUnsupported());
    const runAs = options.uid !== undefined || options.gid !== undefined;
    const { file, argv, cwd } = runAs
      ? identityFirstTrampoline(options)
      : { ...(options.mergeStderr ? mergeTrampoline(options) : options), cwd: options.cwd };
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        // Its pipes (up to 5 pairs) must find descriptors: a spawn that met EMFILE would leak them (Node).
        if (!descriptorsFree(10)) throw Object.assign(new Error('spawn EMFILE'), { code: 'EMFILE' });
        child = cpSpawn(file, argv.slice(1), {
          argv0: argv[0],
          cwd,
          env: options.env,
          stdio: runAs ? [options.stdin, 'pipe', 'pipe', 'pipe'] : [options.stdin, 'pipe', 'pipe'],
          detached: true,
          windowsHide: true,
          ...(options.uid !== undefined ? { uid: options.uid } : {}),
          ...(options.gid !== undefined ? { gid: options.gid } : {}),
        });
      } catch (err) {
        reject(err);
        return;
      }
      const exited = new Promise<ExitStatus>((res) => {
        child.once('exit', (code, signal) => res({ code, signal, usage: null }));
      });
      // Run-as resolves only once the exec is known (fd 3 below): the output is read from now on and held
      // until readOutput (the child may have written, even exited, by then; child_process would drop it).
      let early: ChildOutput | undefined;
      let consumer: ((stream: StreamName, chunk: Buffer) => void) | undefined;
      const held: Array<[StreamName, Buffer]> = [];
      const hold = (name: StreamName, chunk: Buffer) => (consumer ? consumer(name, chunk) : held.push([name, chunk]));
      if (runAs) early = streamOutput(child.stdout!, child.stderr!, hold);
      child.once('error', reject);
      child.once('spawn', () => {
        child.removeListener('error', reject);
        // Later errors (a failed kill, say) must not crash the server.
        child.on('error', () => {});
        const handle: ChildHandle = {
          pid: child.pid!,
          stdin: child.stdin,
          readOutput: (onChunk) => {
            if (!early) return streamOutput(child.stdout!, child.stderr!, onChunk);
            for (const [name, chunk] of held.splice(0)) onChunk(name, chunk);
            consumer = onChunk;
            return early;
          },
          exited,
        };
        if (!runAs) return resolve(handle);
        // Started once fd 3 closes with nothing said (the exec closed it); "x" on it: the cwd was refused.
        const report = child.stdio[3] as Readable;
        let refused = false;
        report.on('data', () => (refused = true));
        report.on('error', () => {});
        report.once('close', () => {
          if (!refused) return resolve(handle);
          for (const s of [child.stdin, child.stdout, child.stderr]) s?.destroy();
          void exited.then(() => reject(cwdRefused(options.cwd))); // it exits at once (127), reaped by then
        });
      });
    });
  },
};
