import { readdirSync, readFileSync } from 'node:fs';
import { killProcessGroup } from './terminate.js';

/**
 * The processes a server instance started, found by the marker every child
 * carries in its environment (EXECD_INSTANCE=<instance id>), and killed with
 * their groups: what a crashed instance left running (ops/recovery.ts), or a
 * worker node's own runs when it loses its claim (queue/redis/).
 */

const MARKER = 'EXECD_INSTANCE=';

export interface Orphan {
  pid: number;
  pgid: number;
  name: string;
  instanceId: string;
}

export interface ProcStat {
  ppid: number;
  pgid: number;
  startTime: string;
  state: string;
  name: string;
}

/** /proc/<pid>/stat's fields that matter here; null when the process is gone. */
export function readStat(pid: number): ProcStat | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    const name = stat.slice(stat.indexOf('(') + 1, close);
    const f = stat.slice(close + 2).split(' ');
    // f[0] is field 3 (state): field n is f[n - 3].
    return { state: f[0]!, ppid: Number(f[1]), pgid: Number(f[2]), startTime: f[19]!, name };
  } catch {
    return null;
  }
}

/** Live processes tagged with one of `ids`, read from /proc/<pid>/environ (the ones we may read). */
export function findTagged(ids: ReadonlySet<string>): Orphan[] {
  const found: Orphan[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let environ: string;
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue; // gone, or another user's
    }
    let at = 0;
    if (!environ.startsWith(MARKER)) {
      at = environ.indexOf(`\0${MARKER}`) + 1;
      if (at === 0) continue; // untagged: never ours to touch
    }
    const end = environ.indexOf('\0', at);
    const id = environ.slice(at + MARKER.length, end < 0 ? undefined : end);
    if (!ids.has(id)) continue;
    const stat = readStat(pid);
    if (stat && stat.state !== 'Z') found.push({ pid, pgid: stat.pgid, name: stat.name, instanceId: id });
  }
  return found;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Kill the orphans: SIGTERM to each group (and each process), SIGKILL after `graceMs` to whatever still lives. */
export async function killOrphans(orphans: Orphan[], graceMs: number): Promise<number[]> {
  const ownGroup = readStat(process.pid)?.pgid;
  const signal = (sig: NodeJS.Signals) => {
    for (const o of orphans) {
      // The group is the job's own (each job leads one); never our own group or init's.
      if (o.pgid > 1 && o.pgid !== ownGroup) killProcessGroup(o.pgid, sig);
      try {
        process.kill(o.pid, sig);
      } catch {
        // gone
      }
    }
  };
  const alive = () => orphans.filter((o) => {
    const s = readStat(o.pid);
    return s !== null && s.state !== 'Z';
  });
  signal('SIGTERM');
  signal('SIGCONT');
  const deadline = Date.now() + graceMs;
  while (alive().length > 0 && Date.now() < deadline) await sleep(20);
  if (alive().length > 0) signal('SIGKILL');
  const until = Date.now() + 1000;
  while (alive().length > 0 && Date.now() < until) await sleep(20);
  return alive().map((o) => o.pid);
}

/** Kill what the instances `ids` left running on this host (their tagged processes and groups); the pids that survived. */
export async function killTagged(ids: ReadonlySet<string>, graceMs: number): Promise<number[]> {
  const orphans = findTagged(ids);
  return orphans.length > 0 ? killOrphans(orphans, graceMs) : [];
}
