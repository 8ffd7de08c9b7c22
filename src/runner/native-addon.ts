import { createRequire } from 'node:module';
import { accessSync, closeSync, constants as fsConstants } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { ResourceUsage } from './spawn.js';
import { PACKAGE_ROOT } from '../paths.js';

/**
 * The N-API addon (native/channel.c) and the helper's wire format (native/protocol.h): loading,
 * request frames, exit watches and pipe readers. native-helper.ts runs the helpers over them.
 */

const BUILD_DIR = fileURLToPath(new URL('native/build/Release/', PACKAGE_ROOT));
export const HELPER_PATH = `${BUILD_DIR}execd-spawn-helper`;
const ADDON_PATH = `${BUILD_DIR}execd_spawn.node`;

/** A watched child's end: exit code or signal number, and its rusage (userUs -1 when none). */
export type ExitWatch = (code: number, signal: number, userUs: number, systemUs: number, maxRssKiB: number) => void;
/**
 * A message from the helper: its type, the spawn it answers, and what it carries (fds -1 when none).
 * `watched`: the addon took this child's SPAWNED itself (native/channel.c on_spawned): it watches the child
 * and said go, and this EXECED or EXEC_FAILED carries its pid and fds; the return value is its exit callback
 * (nothing: it is reaped unseen).
 */
type ChannelMessage = (
  type: number, id: number, pid: number, err: number, fd0: number, fd1: number, fd2: number, step: number, watched: boolean,
) => ExitWatch | void;

export interface Addon {
  openChannel(onMessage: ChannelMessage): [number, object];
  setRef(channel: object, ref: boolean): void;
  closeChannel(channel: object): void;
  watch(pid: number, onExit: ExitWatch, ref?: boolean): void;
  watching(): number;
  probe(): string | null;
  readPipe(fd: number, onData: (chunk: Buffer | null) => void, pipe?: boolean): object;
  closePipe(reader: object): void;
  spawnHelper(path: string, replyFd: number): [number, number];
  kill(pid: number, signal: number): number;
  setDumpable(on: boolean): number;
  mallocTrim(): boolean;
  limitMallocArenas?(n: number): boolean;
  /** TIOCSWINSZ on a pty master: 0 or the errno (absent in an addon built before terminals). */
  resize?(fd: number, cols: number, rows: number): number;
}

const REQ_STDIN_PIPE = 1;
const REQ_MERGE_STDERR = 2;
const REQ_SET_UID = 4;
const REQ_SET_GID = 8;
const REQ_TTY = 16;
export const REPLY_SPAWNED = 1;
export const REPLY_FAILED = 2;
export const REPLY_EXECED = 3;
export const REPLY_EXEC_FAILED = 4;
export const STEP_CHDIR = 1;
export const STEP_TTY = 2;
/**
 * A child killed before its exec by someone else (a `pkill execd-spawn-hel` finds children not exec'd yet): it never
 * ran, so it is retried.
 */
export const ECANCELED = osConstants.errno.ECANCELED;
/** The go a child waits for before its exec (native/protocol.h GO_SIGNAL). */
export const GO_SIGNAL = osConstants.signals.SIGUSR1;

export interface HelperRequest {
  file: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  stdinPipe: boolean;
  mergeStderr: boolean;
  uid?: number | undefined;
  gid?: number | undefined;
  /** A pseudo-terminal of this size (REQ_TTY): the child's 0-2 are its slave; the reply's fds are the master's. */
  tty?: { cols: number; rows: number } | undefined;
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
export const errnoName = (n: number) => ERRNO_NAMES.get(n) ?? 'EIO';

let addon: Addon | undefined;
let addonError: string | undefined;

/** Load the addon once; null when it was not built (or cannot load here). */
export function loadAddon(): Addon | null {
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
  const header = r.tty ? 8 : 6;
  let size = 4 + header * 4;
  for (const s of strings) size += Buffer.byteLength(s) + 1;
  const buf = Buffer.allocUnsafe(size);
  let flags = 0;
  if (r.stdinPipe) flags |= REQ_STDIN_PIPE;
  if (r.mergeStderr) flags |= REQ_MERGE_STDERR;
  if (r.uid !== undefined) flags |= REQ_SET_UID;
  if (r.gid !== undefined) flags |= REQ_SET_GID;
  if (r.tty) flags |= REQ_TTY;
  buf.writeUInt32LE(size - 4, 0);
  buf.writeUInt32LE(id, 4);
  buf.writeUInt32LE(flags, 8);
  buf.writeUInt32LE(r.uid ?? 0, 12);
  buf.writeUInt32LE(r.gid ?? 0, 16);
  buf.writeUInt32LE(r.argv.length, 20);
  buf.writeUInt32LE(strings.length - 2 - r.argv.length, 24);
  if (r.tty) {
    buf.writeUInt32LE(r.tty.cols, 28);
    buf.writeUInt32LE(r.tty.rows, 32);
  }
  let off = 4 + header * 4;
  for (const s of strings) {
    off += buf.write(s, off, 'utf8');
    buf[off++] = 0;
  }
  return buf;
}

/**
 * Watch a child of this process until it exits; the promise never rejects. Throws (synchronously:
 * the caller decides) when it cannot watch; the addon has then killed and reaped the child.
 */
export function watchExit(addon: Addon, pid: number, ref = true): Promise<HelperExit> {
  const [exited, onExit] = exitWatch();
  addon.watch(pid, onExit, ref);
  return exited;
}

/** A child's end as a promise, and the callback the addon settles it with. */
export function exitWatch(): [Promise<HelperExit>, ExitWatch] {
  let settle!: (exit: HelperExit) => void;
  const exited = new Promise<HelperExit>((resolve) => (settle = resolve));
  return [exited, (code, signal, userUs, systemUs, maxRssKiB) => {
    settle({
      code: code >= 0 ? code : null,
      signal: signal ? (SIGNAL_NAMES.get(signal) ?? null) : null,
      usage: userUs < 0
        ? null
        : { userCpuMs: Math.round(userUs / 1000), systemCpuMs: Math.round(systemUs / 1000), maxRssBytes: maxRssKiB * 1024 },
    });
  }];
}

/** Make this process not dumpable (prctl): 0, an errno, or null without the addon. */
export function setDumpable(on: boolean): number | null {
  return loadAddon()?.setDumpable(on) ?? null;
}

/**
 * At most `n` malloc arenas from now on (glibc's mallopt(M_ARENA_MAX)), as MALLOC_ARENA_MAX=n would have from the
 * start: false without the addon (or one built before it had this), or without glibc.
 */
export function limitMallocArenas(n: number): boolean {
  return loadAddon()?.limitMallocArenas?.(n) ?? false;
}

/** Give the C heap's free pages back to the kernel (glibc's malloc_trim): false without the addon or glibc. */
export function mallocTrim(): boolean {
  return loadAddon()?.mallocTrim() ?? false;
}

/**
 * Read one of a child's output pipes in the addon (its epoll set watches the
 * fd; no net.Socket): onData(chunk) per chunk, then onData(null) once it is closed.
 * The fd is the reader's from now on, even when this throws. `pipe` false: a terminal's
 * master, read until EIO (its hang-up can come before its last bytes reach the reader).
 */
export function readPipe(fd: number, onData: (chunk: Buffer | null) => void, pipe = true): object {
  const a = loadAddon();
  if (!a) {
    closeSync(fd);
    throw new HelperSpawnError('ENOSYS', osConstants.errno.ENOSYS, 'native spawner');
  }
  return a.readPipe(fd, onData, pipe);
}

/**
 * kill(2) through the addon: 0 or the errno, never an exception; null when the addon is not
 * there. A run's last group kill finds the group gone nearly always, and Node's process.kill
 * throws then (terminate.ts says what that cost).
 */
export function killNoThrow(pid: number, signal: number): number | null {
  return loadAddon()?.kill(pid, signal) ?? null;
}

/** TIOCSWINSZ on a pty master fd: 0 or the errno (ENOSYS without the addon, or one built before terminals). */
export function resizePty(fd: number, cols: number, rows: number): number {
  const a = loadAddon();
  return a?.resize ? a.resize(fd, cols, rows) : osConstants.errno.ENOSYS;
}

/** Stop a readPipe now and close its fd, without onData(null). Idempotent. */
export const closePipe = (reader: object): void => loadAddon()?.closePipe(reader);

/** Children watched and not reaped yet (tests). */
export const watchedChildren = (): number => loadAddon()?.watching() ?? 0;
