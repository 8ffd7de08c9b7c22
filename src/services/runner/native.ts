import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { Readable } from 'node:stream';
import { helper, nativeUnavailableReason, startHelpers, type HelperChild } from './native-helper.js';
import { resolveExecutable } from './prepare.js';
import { childProcessSpawner, type ChildHandle, type Spawner, type SpawnOptions } from './spawn.js';

/**
 * The native spawner: children are cloned and exec'd by execd-spawn-helper, a
 * small C process, as posix_spawn would (CLONE_VM|CLONE_VFORK, nothing copied),
 * and become this server's children (CLONE_PARENT). So spawning costs the same
 * whatever the server holds, the event loop never waits on a vfork, and exits
 * come with wait4's rusage. docs/design-native-spawn.md says why this design.
 */

/** The parent's end of a pipe as a non-blocking Node stream (libuv sets O_NONBLOCK; the fd is O_CLOEXEC). */
const readEnd = (fd: number) => new Socket({ fd, readable: true, writable: false });
const writeEnd = (fd: number) => new Socket({ fd, readable: false, writable: true });
/** stderr of a merged run: it all went to stdout. */
const emptyStream = () =>
  new Readable({
    read() {
      this.push(null);
    },
  });

function toHandle(child: HelperChild): ChildHandle {
  const fds = [child.stdinFd, child.stdoutFd, child.stderrFd];
  try {
    const stdin = child.stdinFd >= 0 ? writeEnd(child.stdinFd) : null;
    fds[0] = -1;
    const stdout = readEnd(child.stdoutFd);
    fds[1] = -1;
    const stderr = child.stderrFd >= 0 ? readEnd(child.stderrFd) : emptyStream();
    return { pid: child.pid, stdin, stdout, stderr, exited: child.exited };
  } catch (err) {
    // Never seen: the fds are pipes we just received. Do not leave the child running unsupervised.
    for (const fd of fds) if (fd >= 0) closeSync(fd);
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // gone already
    }
    throw err;
  }
}

export const nativeSpawner: Spawner = {
  name: 'native',
  async spawn(options: SpawnOptions): Promise<ChildHandle> {
    // execve does not search PATH; prepare.ts resolves argv[0] already, this covers other callers.
    const file = options.file.includes('/') ? options.file : await resolveExecutable(options.file, options.env.PATH ?? '/bin:/usr/bin', options.cwd);
    const child = await helper().spawn({
      file,
      argv: options.argv,
      env: options.env,
      cwd: resolvePath(options.cwd), // relative to the server's cwd, as with child_process (the helper's is /)
      stdinPipe: options.stdin === 'pipe',
      mergeStderr: options.mergeStderr === true,
      uid: options.uid,
      gid: options.gid,
    });
    return toHandle(child);
  },
};

/** EXECD_SPAWNER. */
export type SpawnerSetting = 'auto' | 'native' | 'child_process';

/**
 * The spawner a setting asks for. `auto` takes the native one when it was built
 * and falls back to child_process otherwise, saying so in its name (which the
 * start-up log and /v1/info show); `native` without a build is an error.
 */
export function selectSpawner(setting: SpawnerSetting): Spawner {
  if (setting === 'child_process') return childProcessSpawner;
  const reason = nativeUnavailableReason();
  if (reason === null) {
    // Start the helpers now, while the server is small (child_process forks each once).
    startHelpers();
    return nativeSpawner;
  }
  if (setting === 'native') {
    throw new Error(`EXECD_SPAWNER=native, but the native spawner is unavailable here: ${reason} (npm run native:build builds it)`);
  }
  return { name: `child_process (native spawner unavailable: ${reason})`, spawn: childProcessSpawner.spawn };
}
