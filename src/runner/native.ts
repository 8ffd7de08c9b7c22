import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { closePipe, nativeUnavailableReason, readPipe, spawnOnHelper, startHelpers, type HelperChild } from './native-helper.js';
import type { StreamName } from './output.js';
import { resolveExecutable } from './prepare.js';
import { PtyInput } from './pty.js';
import { childProcessSpawner, type ChildHandle, type ChildOutput, type Spawner, type SpawnOptions } from './spawn.js';
import { killProcessGroup } from './terminate.js';

/**
 * The native spawner: children are cloned and exec'd by execd-spawn-helper, a
 * small C process, as posix_spawn would (CLONE_VM|CLONE_VFORK, nothing copied),
 * and become this server's children (CLONE_PARENT). So spawning costs the same
 * whatever the server holds, the event loop never waits on a vfork, and exits
 * come with wait4's rusage. docs/design-native-spawn.md says why this design.
 */

/** The parent's end of the stdin pipe as a non-blocking Node stream (libuv sets O_NONBLOCK; the fd is O_CLOEXEC). */
const writeEnd = (fd: number) => new Socket({ fd, readable: false, writable: true });

/**
 * The output pipes, read by the addon (readPipe): a net.Socket per pipe cost more
 * server CPU than the rest of a spawn (docs/benchmarks.md).
 */
function readOutput(fds: number[], onChunk: (stream: StreamName, chunk: Buffer) => void, pipes: boolean): ChildOutput {
  let open = fds.length;
  let settle!: () => void;
  const closed = new Promise<void>((resolve) => (settle = resolve));
  const readers: object[] = [];
  const names: StreamName[] = ['stdout', 'stderr'];
  fds.forEach((fd, i) => {
    const name = names[i]!;
    let done = false;
    const ended = () => {
      if (done) return;
      done = true;
      if (--open === 0) settle();
    };
    try {
      readers.push(readPipe(fd, (chunk) => (chunk === null ? ended() : onChunk(name, chunk)), pipes));
    } catch {
      ended(); // never seen (out of memory): the fd is closed, this stream reads as empty
    }
  });
  if (fds.length === 0) settle();
  return {
    closed,
    get ended() {
      return open === 0;
    },
    destroy() {
      for (const r of readers) closePipe(r);
      if (open > 0) {
        open = 0;
        settle();
      }
    },
  };
}

function toHandle(child: HelperChild, tty: boolean): ChildHandle {
  const output = child.stderrFd >= 0 ? [child.stdoutFd, child.stderrFd] : [child.stdoutFd];
  let stdin: Socket | PtyInput | null = null;
  try {
    // A terminal: stdinFd is the master's writer, stdoutFd its reader (read until EIO: the slave's last holder is gone).
    if (tty) stdin = new PtyInput(child.stdinFd);
    else if (child.stdinFd >= 0) stdin = writeEnd(child.stdinFd);
  } catch (err) {
    // Never seen: the fds are pipes we just received. Do not leave the child running unsupervised.
    for (const fd of [child.stdinFd, ...output]) if (fd >= 0) closeSync(fd);
    killProcessGroup(child.pid, 'SIGKILL'); // false when it is gone already
    throw err;
  }
  let reading: ChildOutput | null = null;
  let hungUp = false;
  const handle: ChildHandle = {
    pid: child.pid,
    stdin,
    readOutput(onChunk) {
      if (reading) throw new Error('readOutput may be called once');
      reading = readOutput(hungUp ? [] : output, onChunk, !tty);
      return reading;
    },
    exited: child.exited,
  };
  if (stdin instanceof PtyInput) {
    const master = stdin;
    handle.resize = (size) => master.resize(size);
    // Both of the master's fds closed: the kernel hangs the terminal up.
    handle.hangup = () => {
      if (hungUp) return;
      hungUp = true;
      master.destroy();
      if (reading) reading.destroy();
      else for (const fd of output) closeSync(fd);
    };
  }
  return handle;
}

export const nativeSpawner: Spawner = {
  name: 'native',
  tty: true,
  async spawn(options: SpawnOptions): Promise<ChildHandle> {
    // execve does not search PATH; prepare.ts resolves argv[0] already, this covers other callers.
    const file = options.file.includes('/') ? options.file : await resolveExecutable(options.file, options.env.PATH ?? '/bin:/usr/bin', options.cwd);
    const child = await spawnOnHelper({
      file,
      argv: options.argv,
      env: options.env,
      cwd: resolvePath(options.cwd), // relative to the server's cwd, as with child_process (the helper's is /)
      stdinPipe: options.stdin === 'pipe',
      mergeStderr: options.mergeStderr === true,
      uid: options.uid,
      gid: options.gid,
      tty: options.tty,
    });
    return toHandle(child, options.tty !== undefined);
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
