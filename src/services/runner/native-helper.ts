import { accessSync, closeSync, constants as fsConstants, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, constants as osConstants } from 'node:os';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { ResourceUsage } from './spawn.js';

/**
 * The server's side of execd-spawn-helper (native/helper.c): small C processes,
 * started once (one per core, 2 to 4), that clone every child from their own small
 * address space with CLONE_PARENT, so the child is this server's. Requests go down the helper's stdin;
 * replies, with the child's pipe fds as SCM_RIGHTS, come back on a SOCK_SEQPACKET
 * socket the addon (native/channel.c) reads; the addon also watches each child's
 * exit (pidfd) and reaps it with wait4's rusage. Byte layouts: native/protocol.h.
 */

const BUILD_DIR = fileURLToPath(new URL('../../../native/build/Release/', import.meta.url));
export const HELPER_PATH = `${BUILD_DIR}execd-spawn-helper`;
const ADDON_PATH = `${BUILD_DIR}execd_spawn.node`;

interface Addon {
  openChannel(onMessage: (type: number, id: number, pid: number, err: number, fd0: number, fd1: number, fd2: number) => void): [number, object];
  setRef(channel: object, ref: boolean): void;
  closeChannel(channel: object): void;
  watch(pid: number, onExit: (code: number, signal: number, userUs: number, systemUs: number, maxRssKiB: number) => void, ref?: boolean): void;
  watching(): number;
  probe(): string | null;
  readPipe(fd: number, onData: (chunk: Buffer | null) => void): object;
  closePipe(reader: object): void;
  spawnHelper(path: string, replyFd: number): [number, number];
  kill(pid: number, signal: number): number;
}

const REQ_STDIN_PIPE = 1;
const REQ_MERGE_STDERR = 2;
const REQ_SET_UID = 4;
const REQ_SET_GID = 8;
const REPLY_SPAWNED = 1;
const REPLY_FAILED = 2;

export interface HelperRequest {
  file: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  stdinPipe: boolean;
  mergeStderr: boolean;
  uid?: number | undefined;
  gid?: number | undefined;
}

export interface HelperExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  usage: ResourceUsage | null;
}

export interface HelperChild {
  pid: number;
  /** The server's ends: stdin writer (or -1), stdout reader, stderr reader (or -1 when merged). */
  stdinFd: number;
  stdoutFd: number;
  stderrFd: number;
  exited: Promise<HelperExit>;
}

/** A spawn the helper refused: shaped like Node's system errors so toSpawnError maps it. */
export class HelperSpawnError extends Error {
  constructor(
    readonly code: string,
    readonly errno: number,
    readonly syscall = 'spawn',
  ) {
    super(`${syscall} ${code}`);
  }
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, n]) => [n, name]));
const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);
const errnoName = (n: number) => ERRNO_NAMES.get(n) ?? 'EIO';

let addon: Addon | undefined;
let addonError: string | undefined;

/** Load the addon once; null when it was not built (or cannot load here). */
function loadAddon(): Addon | null {
  if (addon) return addon;
  if (addonError !== undefined) return null;
  try {
    addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
    return addon;
  } catch (err) {
    addonError = (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ? 'native addon not built' : 'native addon failed to load';
    return null;
  }
}

/** Null when the native spawner can run here, else a short reason (no paths). */
export function nativeUnavailableReason(): string | null {
  if (process.platform !== 'linux') return `not supported on ${process.platform}`;
  const a = loadAddon();
  if (!a) return addonError!;
  const kernel = a.probe();
  if (kernel !== null) return kernel;
  try {
    accessSync(HELPER_PATH, fsConstants.X_OK);
  } catch {
    return 'spawn helper not built';
  }
  return null;
}

/** One request frame (native/protocol.h). */
export function encodeRequest(id: number, r: HelperRequest): Buffer {
  const strings = [r.file, r.cwd, ...r.argv];
  for (const [k, v] of Object.entries(r.env)) strings.push(`${k}=${v}`);
  // Strings travel NUL-terminated (prepare.ts refuses NULs first; this guards other callers).
  if (strings.some((s) => s.includes('\0'))) throw new HelperSpawnError('EINVAL', osConstants.errno.EINVAL);
  let size = 4 + 6 * 4;
  for (const s of strings) size += Buffer.byteLength(s) + 1;
  const buf = Buffer.allocUnsafe(size);
  let flags = 0;
  if (r.stdinPipe) flags |= REQ_STDIN_PIPE;
  if (r.mergeStderr) flags |= REQ_MERGE_STDERR;
  if (r.uid !== undefined) flags |= REQ_SET_UID;
  if (r.gid !== undefined) flags |= REQ_SET_GID;
  buf.writeUInt32LE(size - 4, 0);
  buf.writeUInt32LE(id, 4);
  buf.writeUInt32LE(flags, 8);
  buf.writeUInt32LE(r.uid ?? 0, 12);
  buf.writeUInt32LE(r.gid ?? 0, 16);
  buf.writeUInt32LE(r.argv.length, 20);
  buf.writeUInt32LE(strings.length - 2 - r.argv.length, 24);
  let off = 28;
  for (const s of strings) {
    off += buf.write(s, off, 'utf8');
    buf[off++] = 0;
  }
  return buf;
}

interface Pending {
  resolve(child: HelperChild): void;
  reject(err: Error): void;
  stdinPipe: boolean;
  mergeStderr: boolean;
}

/**
 * One running helper. When it goes away (crash, kill), pending spawns reject
 * with EAGAIN and the next spawn starts a new one; running children are the
 * server's own and carry on, watched as before.
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
  closed = false;

  constructor(
    private readonly addon: Addon,
    private readonly onClosed: (h: HelperProcess) => void,
  ) {
    const [helperFd, channel] = addon.openChannel((type, id, pid, err, fd0, fd1, fd2) => this.onMessage(type, id, pid, err, [fd0, fd1, fd2]));
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
      // Reaped like any child (unreferenced: an idle helper keeps nothing alive); its end closes it here.
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
    if (this.closed) return Promise.reject(helperGone());
    const id = this.nextId;
    this.nextId = this.nextId >= 0x7ffffff0 ? 1 : this.nextId + 1;
    const frame = encodeRequest(id, request);
    return new Promise<HelperChild>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, stdinPipe: request.stdinPipe, mergeStderr: request.mergeStderr });
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
          this.close(); // EPIPE: the helper is gone; what is pending fails with EAGAIN, the next spawn starts another
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
    if (want === this.referenced || this.closed) return;
    this.referenced = want;
    this.addon.setRef(this.channel, want);
  }

  private onMessage(type: number, id: number, pid: number, err: number, received: number[]): void {
    const fds = received.filter((fd) => fd >= 0);
    const p = this.pending.get(id);
    if (type !== REPLY_SPAWNED && type !== REPLY_FAILED) {
      for (const fd of fds) closeSync(fd);
      this.close();
      return;
    }
    this.pending.delete(id);
    this.updateRef();
    if (type === REPLY_FAILED) {
      if (pid > 0) {
        try {
          void watchExit(this.addon, pid); // it died before exec: reap it
        } catch {
          // the addon reaped it already
        }
      }
      p?.reject(new HelperSpawnError(errnoName(err), -err));
      return;
    }
    let exited: Promise<HelperExit>;
    try {
      exited = watchExit(this.addon, pid);
    } catch (e) {
      // Cannot watch it (out of fds): the addon has killed and reaped it.
      for (const fd of fds) closeSync(fd);
      p?.reject(e as Error);
      return;
    }
    if (!p) {
      for (const fd of fds) closeSync(fd);
      return;
    }
    // fds arrive in order: [stdin writer], stdout reader, [stderr reader]; the request says which are there.
    const stdinFd = p.stdinPipe ? fds.shift()! : -1;
    const stdoutFd = fds.shift()!;
    const stderrFd = p.mergeStderr ? -1 : fds.shift()!;
    p.resolve({ pid, stdinFd, stdoutFd, stderrFd, exited });
  }

  /** Idempotent: stop the helper and fail what is pending; the next spawn starts afresh. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.addon.closeChannel(this.channel);
    // Not reaped yet (our watcher reaps it), so the pid is still the helper's.
    if (!this.exited) this.addon.kill(this.pid, osConstants.signals.SIGKILL);
    this.requests.destroy();
    for (const p of this.pending.values()) p.reject(helperGone());
    this.pending.clear();
    this.onClosed(this);
  }
}

const helperGone = () => new HelperSpawnError('EAGAIN', osConstants.errno.EAGAIN, 'spawn helper');

/** Watch a child of this process until it exits; the promise never rejects. Throws when it cannot watch. */
function watchExit(addon: Addon, pid: number, ref = true): Promise<HelperExit> {
  return new Promise<HelperExit>((resolve) => {
    addon.watch(pid, (code, signal, userUs, systemUs, maxRssKiB) => {
      resolve({
        code: code >= 0 ? code : null,
        signal: signal ? (SIGNAL_NAMES.get(signal) ?? null) : null,
        usage: userUs < 0 ? null : { userCpuMs: Math.round(userUs / 1000), systemCpuMs: Math.round(systemUs / 1000), maxRssBytes: maxRssKiB * 1024 },
      });
    }, ref);
  });
}

/**
 * Read one of a child's output pipes in the addon (its epoll set watches the
 * fd; no net.Socket): onData(chunk) per chunk, then onData(null) once it is closed.
 * The fd is the reader's from now on, even when this throws.
 */
export function readPipe(fd: number, onData: (chunk: Buffer | null) => void): object {
  const a = loadAddon();
  if (!a) {
    closeSync(fd);
    throw new HelperSpawnError('ENOSYS', osConstants.errno.ENOSYS, 'native spawner');
  }
  return a.readPipe(fd, onData);
}

/**
 * kill(2) through the addon: 0 or the errno, never an exception; null when the addon is not
 * there. A run's last group kill finds the group gone nearly always, and Node's process.kill
 * throws then (terminate.ts says what that cost).
 */
export function killNoThrow(pid: number, signal: number): number | null {
  return loadAddon()?.kill(pid, signal) ?? null;
}

/** Stop a readPipe now and close its fd, without onData(null). Idempotent. */
export const closePipe = (reader: object): void => loadAddon()?.closePipe(reader);

/** Children watched and not reaped yet (tests). */
export const watchedChildren = (): number => loadAddon()?.watching() ?? 0;

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

export type { HelperProcess };
