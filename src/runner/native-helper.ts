import { closeSync, writeSync } from 'node:fs';
import { availableParallelism, constants as osConstants } from 'node:os';
import { Socket } from 'node:net';
import {
  ECANCELED,
  encodeRequest,
  errnoName,
  GO_SIGNAL,
  HELPER_PATH,
  HelperSpawnError,
  loadAddon,
  REPLY_EXEC_FAILED,
  REPLY_EXECED,
  REPLY_FAILED,
  REPLY_SPAWNED,
  STEP_CHDIR,
  STEP_TTY,
  exitWatch,
  watchExit,
  type Addon,
  type ExitWatch,
  type HelperChild,
  type HelperExit,
  type HelperRequest,
} from './native-addon.js';

export {
  closePipe,
  encodeRequest,
  HELPER_PATH,
  HelperSpawnError,
  killNoThrow,
  nativeUnavailableReason,
  readPipe,
  resizePty,
  setDumpable,
  watchedChildren,
  type HelperChild,
  type HelperExit,
  type HelperRequest,
} from './native-addon.js';

/**
 * The server's side of execd-spawn-helper (native/helper.c): small C processes,
 * started once (one per core, 2 to 4), that clone every child from their own small
 * address space with CLONE_PARENT, so the child is this server's. Requests go down the helper's stdin;
 * replies, with the child's pipe fds as SCM_RIGHTS, come back on a SOCK_SEQPACKET
 * socket the addon (native/channel.c) reads; the addon also watches each child's
 * exit (pidfd) and reaps it with wait4's rusage. Byte layouts: native/protocol.h.
 */

interface Pending {
  resolve(child: HelperChild): void;
  reject(err: Error): void;
  stdinPipe: boolean;
  mergeStderr: boolean;
  /** Set at SPAWNED: the child exists, is watched and was told to go; handed over at EXECED. */
  child?: HelperChild;
}

/** The step a child reports as failed (FAILED's step), as the syscall of its error. */
const STEP_NAMES: Record<number, string> = { [STEP_CHDIR]: 'chdir', [STEP_TTY]: 'tty' };

/** A failed exec's error (ECANCELED: stopped before its exec by someone else; it never ran, so it is retried). */
const execFailure = (err: number): Error => (err === ECANCELED ? new HelperGone() : new HelperSpawnError(errnoName(err), -err));

/** A child's fds, which arrive in order: [stdin writer], stdout reader, [stderr reader]; the request says which are there. */
function childFds(p: Pending, fds: number[]): Pick<HelperChild, 'stdinFd' | 'stdoutFd' | 'stderrFd'> {
  const stdinFd = p.stdinPipe ? fds.shift()! : -1;
  const stdoutFd = fds.shift()!;
  const stderrFd = p.mergeStderr ? -1 : fds.shift()!;
  return { stdinFd, stdoutFd, stderrFd };
}

/** A spawn its helper never started (the helper died first): safe to send to another helper. */
class HelperGone extends HelperSpawnError {
  constructor() {
    super('EAGAIN', osConstants.errno.EAGAIN, 'spawn helper');
  }
}

/**
 * One running helper. A start is atomic from the server's view (native/protocol.h): the child
 * reports itself (SPAWNED, with its pid and pipes) and waits before its exec until we watch it
 * (pidfd) and say go; when we cannot watch it we kill it, and it never ran. When the helper goes
 * away (crash, kill), it takes no new spawns and the next spawn starts a new one; its reply socket
 * is read on until its end of input, which comes once every child it started has reported (each
 * child holds a close-on-exec copy). Then what never got a child is retried elsewhere, and what
 * did is supervised like any run.
 */
class HelperProcess {
  readonly pid: number;
  private readonly requestFd: number;
  private readonly requests: Socket;
  private readonly channel: object;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private referenced = false;
  private exited = false;
  private finished = false;
  /** Takes no new spawns (the helper is gone or going). */
  closed = false;

  constructor(
    private readonly addon: Addon,
    private readonly onClosed: (h: HelperProcess) => void,
  ) {
    const [helperFd, channel] = addon.openChannel((type, id, pid, err, fd0, fd1, fd2, step, watched) =>
      this.onMessage(type, id, pid, err, [fd0, fd1, fd2], step, watched));
    this.channel = channel;
    let requestFd: number;
    try {
      // Started by the addon, not child_process: with no child process of libuv's, libuv installs no
      // SIGCHLD handler, and a run's end costs no signal handling (native/channel.c, section 4). Its own
      // session: a terminal's Ctrl-C reaches the server, which shuts down in order; the helper ends when
      // its requests pipe does. Its environment is empty: children get theirs per request.
      [this.pid, requestFd] = addon.spawnHelper(HELPER_PATH, helperFd);
    } catch (err) {
      addon.closeChannel(channel);
      throw err;
    } finally {
      closeSync(helperFd);
    }
    this.requestFd = requestFd;
    this.requests = new Socket({ fd: requestFd, readable: false, writable: true });
    this.requests.on('error', () => this.close());
    // Idle, the helper keeps nothing alive; a pending spawn refs the channel (updateRef).
    this.requests.unref();
    addon.setRef(channel, false);
    try {
      // Reaped like any child (unreferenced: an idle helper keeps nothing alive); its end retires it here.
      void watchExit(addon, this.pid, false).then(() => {
        this.exited = true;
        this.close();
      });
    } catch (err) {
      // Cannot watch it (out of fds): the addon has killed and reaped it.
      this.exited = true;
      this.close();
      throw err;
    }
  }

  /** Spawns sent and not answered yet. */
  get busy(): number {
    return this.pending.size;
  }

  spawn(request: HelperRequest): Promise<HelperChild> {
    if (this.closed) return Promise.reject(new HelperGone());
    const id = this.nextId;
    this.nextId = this.nextId >= 0x7ffffff0 ? 1 : this.nextId + 1;
    const frame = encodeRequest(id, request);
    return new Promise<HelperChild>((resolve, reject) => {
      // A terminal's reply carries the master twice, in the places of a stdin writer and a merged output reader.
      const tty = request.tty !== undefined;
      this.pending.set(id, { resolve, reject, stdinPipe: request.stdinPipe || tty, mergeStderr: request.mergeStderr || tty });
      this.updateRef();
      this.send(frame);
    });
  }

  /**
   * One write(2) straight to the pipe while nothing is queued on the stream (its machinery
   * cost more than the write); the pipe is non-blocking (net.Socket made it so), so a full
   * pipe answers EAGAIN and what is left goes through the stream, in order.
   */
  private send(frame: Buffer): void {
    if (this.requests.writableLength === 0 && !this.requests.destroyed) {
      let written = 0;
      try {
        written = writeSync(this.requestFd, frame);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
          this.close(); // EPIPE: the helper is gone; what it never started is retried once its socket ends
          return;
        }
      }
      if (written === frame.length) return;
      frame = frame.subarray(written);
    }
    this.requests.write(frame);
  }

  private updateRef(): void {
    const want = this.pending.size > 0;
    if (want === this.referenced || this.finished) return;
    this.referenced = want;
    this.addon.setRef(this.channel, want);
  }

  private onMessage(
    type: number, id: number, pid: number, err: number, received: number[], step: number, watched: boolean,
  ): ExitWatch | undefined {
    const fds = received.filter((fd) => fd >= 0);
    if (type === 0) {
      this.finish(); // end of input (or an error): every child this helper started has reported
      return;
    }
    const p = this.pending.get(id);
    // The addon took SPAWNED itself (native/channel.c on_spawned): the child is watched and was told to go.
    if (watched) {
      const onExit = this.onStarted(type, id, p, pid, err, fds);
      this.updateRef();
      return onExit;
    }
    switch (type) {
      case REPLY_SPAWNED:
        this.onSpawned(id, p, pid, err, fds);
        break;
      case REPLY_FAILED: // never started; a child that died before its exec is reaped here
        if (pid > 0) this.reap(pid);
        if (p && !p.child) {
          this.pending.delete(id);
          p.reject(err === ECANCELED ? new HelperGone() : new HelperSpawnError(errnoName(err), -err, STEP_NAMES[step] ?? 'spawn'));
        }
        break;
      case REPLY_EXECED:
        if (p?.child) {
          this.pending.delete(id);
          p.resolve(p.child);
        }
        break;
      case REPLY_EXEC_FAILED: // the watcher reaps the child (it exits 127 before running anything)
        if (p?.child) {
          this.pending.delete(id);
          for (const fd of [p.child.stdinFd, p.child.stdoutFd, p.child.stderrFd]) if (fd >= 0) closeSync(fd);
          p.reject(execFailure(err));
        }
        break;
      default:
        for (const fd of fds) closeSync(fd);
        this.addon.closeChannel(this.channel);
        this.finish();
        return;
    }
    this.updateRef();
  }

  /**
   * EXECED or EXEC_FAILED of a child the addon watches and told to go (its SPAWNED never came here): the
   * pid and fds come now; the exit callback returned is the run's (undefined: the addon reaps it unseen).
   */
  private onStarted(type: number, id: number, p: Pending | undefined, pid: number, err: number, fds: number[]): ExitWatch | undefined {
    if (type === REPLY_EXECED && p && !p.child) {
      const [exited, onExit] = exitWatch();
      this.pending.delete(id);
      p.resolve({ pid, ...childFds(p, fds), exited });
      return onExit;
    }
    // A failed exec (the child exits 127 before running anything), or nobody waits for it (cannot happen).
    for (const fd of fds) closeSync(fd);
    if (p && !p.child) {
      this.pending.delete(id);
      p.reject(execFailure(err));
    }
    return undefined;
  }

  /** A child exists and waits before its exec: watch it and say go, or kill it (it never ran). */
  private onSpawned(id: number, p: Pending | undefined, pid: number, err: number, fds: number[]): void {
    const refuse = (e: Error) => {
      for (const fd of fds) closeSync(fd);
      this.reap(pid, true);
      if (p) {
        this.pending.delete(id);
        p.reject(e);
      }
    };
    // err: its pipes could not be received (this process is out of descriptors).
    if (err) return refuse(new HelperSpawnError(errnoName(err), -err, 'recvmsg'));
    if (!p || p.child) return refuse(new HelperGone()); // nobody waits for it (cannot happen)
    let exited: Promise<HelperExit>;
    try {
      exited = watchExit(this.addon, pid);
    } catch (e) {
      // Cannot watch it (out of fds): the addon has killed and reaped it before its exec.
      for (const fd of fds) closeSync(fd);
      this.pending.delete(id);
      p.reject(e as Error);
      return;
    }
    // Gone already (ESRCH: killed by someone): the watcher reaps it, and EXEC_FAILED follows.
    this.addon.kill(pid, GO_SIGNAL);
    p.child = { pid, ...childFds(p, fds), exited };
  }

  /** Reap a child of ours that is dead or dying (`kill`: that waits for our go, which it will not get). */
  private reap(pid: number, kill = false): void {
    if (kill) this.addon.kill(pid, osConstants.signals.SIGKILL);
    try {
      void watchExit(this.addon, pid);
    } catch {
      // the addon reaped it (out of fds), or it is not ours
    }
  }

  /** Idempotent: take no new spawns, stop the helper; the channel is read on until its end (finish). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Not reaped yet (our watcher reaps it), so the pid is still the helper's.
    if (!this.exited) this.addon.kill(this.pid, osConstants.signals.SIGKILL);
    this.requests.destroy();
    this.onClosed(this);
  }

  /**
   * The reply socket ended: every child this helper created has reported. A spawn with a child is
   * supervised from here like any run (if the helper died between the exec and its EXECED, a failed
   * exec shows as exit status 127); one without never started and is retried on another helper.
   */
  private finish(): void {
    if (this.finished) return;
    this.close();
    this.finished = true;
    this.addon.closeChannel(this.channel);
    for (const p of this.pending.values()) {
      if (p.child) p.resolve(p.child);
      else p.reject(new HelperGone());
    }
    this.pending.clear();
  }
}

/**
 * The helpers, side by side. A clone blocks its helper until the child has exec'd
 * (about a millisecond here, several under load), so with one helper spawns would
 * queue behind each other; one per core lets them overlap, as Go's os/exec does
 * across threads. A spawn goes to the least busy helper.
 */
let poolSize = Math.min(4, Math.max(2, availableParallelism()));
const pool: Array<HelperProcess | null> = [];

function startHelper(slot: number): HelperProcess {
  const a = loadAddon();
  if (!a) throw new HelperSpawnError('ENOSYS', osConstants.errno.ENOSYS, 'native spawner');
  const h = new HelperProcess(a, (closed) => {
    if (pool[slot] === closed) pool[slot] = null;
  });
  pool[slot] = h;
  return h;
}

/** Start every helper now (selectSpawner does, at start-up). */
export function startHelpers(): void {
  for (let i = 0; i < poolSize; i++) if (!pool[i] || pool[i]!.closed) startHelper(i);
}

/** The helper for the next spawn: an idle one, else the least busy; one that went away is started again. */
export function helper(): HelperProcess {
  let best: HelperProcess | null = null;
  for (let i = 0; i < poolSize; i++) {
    const h = pool[i] && !pool[i]!.closed ? pool[i]! : startHelper(i);
    if (h.busy === 0) return h;
    if (!best || h.busy < best.busy) best = h;
  }
  return best!;
}

/** How many helpers to run (benchmarks; call it while idle: helpers beyond the new size stop at once). */
export function setHelperCount(n: number): void {
  poolSize = Math.max(1, n);
  for (let i = poolSize; i < pool.length; i++) pool[i]?.close();
  pool.length = Math.min(pool.length, poolSize);
}

/** Pids of the running helpers (tests, diagnostics). */
export const helperPids = (): number[] => pool.filter((h): h is HelperProcess => !!h && !h.closed).map((h) => h.pid);

/** Start a spawn on a helper; one its helper never started (the helper died first) is sent to another, twice at most. */
export async function spawnOnHelper(request: HelperRequest): Promise<HelperChild> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await helper().spawn(request);
    } catch (err) {
      if (!(err instanceof HelperGone) || attempt >= 2) throw err;
    }
  }
}

export type { HelperProcess };
