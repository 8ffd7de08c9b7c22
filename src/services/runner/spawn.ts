import { spawn as cpSpawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

/**
 * The spawn step, behind a small interface so a faster spawner (posix_spawn
 * from a small address space) can replace Node's fork-based child_process.
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
  uid?: number | undefined;
  gid?: number | undefined;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ChildHandle {
  pid: number;
  stdin: Writable | null;
  stdout: Readable;
  stderr: Readable;
  /** Resolves once the process has exited and been reaped. */
  exited: Promise<ExitStatus>;
}

export interface Spawner {
  readonly name: string;
  /** Rejects with the spawn error (err.code = errno name) when the process cannot start. */
  spawn(options: SpawnOptions): Promise<ChildHandle>;
}

/** Spawner over Node's child_process (libuv fork + exec). Every child leads its own process group. */
export const childProcessSpawner: Spawner = {
  name: 'child_process',
  spawn(options) {
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = cpSpawn(options.file, options.argv.slice(1), {
          argv0: options.argv[0],
          cwd: options.cwd,
          env: options.env,
          stdio: [options.stdin, 'pipe', 'pipe'],
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
        child.once('exit', (code, signal) => res({ code, signal }));
      });
      child.once('error', reject);
      child.once('spawn', () => {
        child.removeListener('error', reject);
        // Later errors (a failed kill, say) must not crash the server.
        child.on('error', () => {});
        resolve({
          pid: child.pid!,
          stdin: child.stdin,
          stdout: child.stdout!,
          stderr: child.stderr!,
          exited,
        });
      });
    });
  },
};
