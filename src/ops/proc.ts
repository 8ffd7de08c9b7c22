import { close, open, read } from 'node:fs';
import { readdir } from 'node:fs/promises';

/**
 * The host's processes as the kernel reports them in /proc: read directly,
 * never by spawning `ps`. Processes come and go while we read; one that
 * vanishes (or turns out unreadable) part-way is skipped, never an error.
 */

/** A process as read from /proc/<pid>/{stat,status,cmdline}. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  pgid: number;
  /** Real user and group ids. */
  uid: number;
  gid: number;
  /** One letter as in ps: R running, S sleeping, D disk wait, Z zombie, T stopped, I idle… */
  state: string;
  /** The kernel's comm: the executable's basename, at most 15 bytes. */
  name: string;
  /** From /proc/<pid>/cmdline; empty for kernel threads and zombies. */
  argv: string[];
  rssBytes: number;
  /** User plus system CPU time. */
  cpuMs: number;
  startedAt: Date;
}

/**
 * Read a whole /proc file: open, read until a read leaves room in the buffer,
 * close. That is two system calls fewer than readFile (no fstat, which is 0
 * for /proc anyway, and no final empty read), and it shows: on a few hundred
 * processes it takes about half the time of fs/promises' readFile.
 */
export function readProcFile(path: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    open(path, 'r', (openErr, fd) => {
      if (openErr) return reject(openErr);
      let buf = Buffer.allocUnsafe(4096);
      let length = 0;
      const finish = (err: Error | null) => close(fd, () => (err ? reject(err) : resolve(buf.subarray(0, length))));
      const readMore = (): void =>
        read(fd, buf, length, buf.length - length, null, (err, n) => {
          if (err) return finish(err);
          length += n;
          if (n === 0 || length < buf.length) return finish(null);
          const bigger = Buffer.allocUnsafe(buf.length * 2);
          buf.copy(bigger, 0, 0, length);
          buf = bigger;
          readMore();
        });
      readMore();
    });
  });
}

/** USER_HZ: the unit of /proc times, 100 on every Linux architecture. */
const CLOCK_TICKS_PER_SECOND = 100;
const MS_PER_TICK = 1000 / CLOCK_TICKS_PER_SECOND;
/** Only for kernels without VmRSS in status; the common page size. */
const PAGE_SIZE = 4096;
/** How many processes are read at once (each is three small reads). */
const CONCURRENCY = 16;

/**
 * A system error reading a process's files (ENOENT or ESRCH: it exited
 * meanwhile; EACCES: hidden from us) means that process cannot be reported:
 * skip it.
 */
const isSystemError = (err: unknown): boolean =>
  err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string';

/**
 * Boot time from /proc/stat `btime`, in ms since the epoch. Read per request,
 * not once: the kernel derives it from the wall clock, so it follows clock steps.
 */
async function bootTime(): Promise<number> {
  const text = (await readProcFile('/proc/stat')).toString('latin1');
  const m = /^btime\s+(\d+)$/m.exec(text);
  if (!m) throw new Error('/proc/stat has no btime line');
  return Number(m[1]) * 1000;
}

export interface StatFields {
  pid: number;
  name: string;
  state: string;
  ppid: number;
  pgid: number;
  utime: number;
  stime: number;
  starttime: number;
  rssPages: number;
}

/**
 * Parse /proc/<pid>/stat. The comm field sits in parentheses and may itself
 * contain spaces and parentheses, so it ends at the LAST ')'.
 * Returns null for text that does not look like a stat line.
 */
export function parseStat(text: string): StatFields | null {
  const open = text.indexOf(' (');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const f = text.slice(close + 2).trimEnd().split(' ');
  // f[0] is field 3 (state) of proc(5); field n is f[n - 3].
  if (f.length < 22) return null;
  const num = (i: number) => Number(f[i]);
  const out: StatFields = {
    pid: Number(text.slice(0, open)),
    name: text.slice(open + 2, close),
    state: f[0]!,
    ppid: num(1),
    pgid: num(2),
    utime: num(11),
    stime: num(12),
    starttime: num(19),
    rssPages: num(21),
  };
  const numbers = [out.pid, out.ppid, out.pgid, out.utime, out.stime, out.starttime, out.rssPages];
  return numbers.every(Number.isSafeInteger) && out.state.length > 0 ? out : null;
}

export interface StatusFields {
  tgid: number;
  uid: number;
  gid: number;
  /** VmRSS in bytes; absent for kernel threads and zombies. */
  rssBytes?: number;
}

/** The lines of /proc/<pid>/status we need: Tgid, the real Uid and Gid, VmRSS. */
export function parseStatus(text: string): StatusFields | null {
  const field = (name: string): string | undefined => {
    const at = text.indexOf(`\n${name}:`);
    if (at < 0) return undefined;
    const end = text.indexOf('\n', at + 1);
    return text.slice(at + name.length + 2, end < 0 ? undefined : end).trim();
  };
  const first = (value: string | undefined) => (value === undefined ? NaN : Number(value.split(/\s+/)[0]));
  const tgid = first(field('Tgid'));
  const uid = first(field('Uid'));
  const gid = first(field('Gid'));
  if (![tgid, uid, gid].every(Number.isSafeInteger)) return null;
  const rssKb = first(field('VmRSS'));
  return { tgid, uid, gid, ...(Number.isSafeInteger(rssKb) ? { rssBytes: rssKb * 1024 } : {}) };
}

/** argv from /proc/<pid>/cmdline: NUL-separated, NUL-terminated. */
export function parseCmdline(buf: Buffer): string[] {
  if (buf.length === 0) return [];
  const text = buf.toString('utf8');
  const parts = text.split('\0');
  if (parts[parts.length - 1] === '') parts.pop();
  return parts;
}

/**
 * Read one process, or null when it does not exist (or no longer does), is a
 * thread rather than a process, or cannot be read.
 */
export async function readProcess(pid: number, bootTimeMs?: number): Promise<ProcInfo | null> {
  const dir = `/proc/${pid}`;
  const boot = bootTimeMs ?? (await bootTime());
  try {
    const [statBytes, statusBytes, cmdline] = await Promise.all([
      readProcFile(`${dir}/stat`),
      readProcFile(`${dir}/status`),
      readProcFile(`${dir}/cmdline`),
    ]);
    // latin1 keeps the slicing at the last ')' byte-exact; comm itself is UTF-8.
    const stat = parseStat(statBytes.toString('latin1'));
    const status = parseStatus(statusBytes.toString('utf8'));
    // /proc/<tid> also answers for a thread id; that is not a process.
    if (!stat || !status || stat.pid !== pid || status.tgid !== pid) return null;
    return {
      pid,
      ppid: stat.ppid,
      pgid: stat.pgid,
      uid: status.uid,
      gid: status.gid,
      state: stat.state,
      name: Buffer.from(stat.name, 'latin1').toString('utf8'),
      argv: parseCmdline(cmdline),
      rssBytes: status.rssBytes ?? stat.rssPages * PAGE_SIZE,
      cpuMs: Math.round((stat.utime + stat.stime) * MS_PER_TICK),
      startedAt: new Date(boot + Math.round(stat.starttime * MS_PER_TICK)),
    };
  } catch (err) {
    if (isSystemError(err)) return null;
    throw err;
  }
}

/** The pids in /proc right now, ascending. */
async function listPids(): Promise<number[]> {
  const names = await readdir('/proc');
  const pids: number[] = [];
  for (const name of names) if (/^[1-9]\d*$/.test(name)) pids.push(Number(name));
  return pids.sort((a, b) => a - b);
}

/** Every process of the host that can be read, sorted by pid. */
export async function listProcesses(): Promise<ProcInfo[]> {
  const [pids, boot] = await Promise.all([listPids(), bootTime()]);
  const found: (ProcInfo | null)[] = new Array(pids.length).fill(null);
  let next = 0;
  const worker = async () => {
    while (next < pids.length) {
      const i = next++;
      found[i] = await readProcess(pids[i]!, boot);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, pids.length) }, worker));
  return found.filter((p): p is ProcInfo => p !== null);
}
