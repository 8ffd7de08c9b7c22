import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { preparePrivateDir, removeInstanceFiles, type InstanceFiles } from './data-dir.js';
import { findTagged, killOrphans, readStat, type Orphan } from '../runner/tagged.js';

export { findTagged, killTagged, type Orphan } from '../runner/tagged.js';

/**
 * Start-up recovery. Every child execd starts carries EXECD_INSTANCE=<instance
 * id> in its environment, and every running server keeps a small record in
 * EXECD_INSTANCE_DIR: `<instance id>.json` with its pid and that pid's start
 * time. A server that crashed (SIGKILL, OOM, power) leaves its record behind;
 * the next start finds the records whose server is gone, looks through
 * /proc/<pid>/environ for processes tagged with their ids, and kills their
 * process groups. Processes of a live instance and untagged ones are never
 * touched: only a marker of a dead instance's record counts. The record also
 * names the instance's own directory of output files, which goes with it.
 */

export interface InstanceRecord {
  instanceId: string;
  pid: number;
  /** Field 22 of /proc/<pid>/stat (clock ticks since boot): with the pid, names one process for the machine's uptime. */
  pidStartTime: string;
  startedAt: string;
  /** `<data dir>/<instance id>`: removed once the instance is found dead (absent in records of older versions). */
  filesDir?: string;
  /** The data directory was made for this instance alone (EXECD_DATA_DIR unset): removed with it. */
  ownDataDir?: boolean;
}

export interface RecoveryReport {
  /** Records of instances found dead (their files are removed). */
  deadInstances: InstanceRecord[];
  /** Tagged processes of those instances found running, and killed with their groups. */
  orphans: Orphan[];
  /** Pids still alive after SIGKILL (should be empty). */
  survivors: number[];
  /** The files directories of dead instances removed. */
  filesRemoved: string[];
}

const ID = /^[A-Za-z0-9-]{1,64}$/;

/** The directory of instance records: created 0700, and refused when someone else owns it or can write to it. */
export function prepareInstanceDir(dir: string): void {
  // Another user able to plant a record could make us kill their choice of tagged processes, or remove their choice of files.
  preparePrivateDir(dir, 'EXECD_INSTANCE_DIR');
}

/** Record this instance; returns the function that removes the record again (after a clean shutdown). */
export function registerInstance(dir: string, instanceId: string, files?: Pick<InstanceFiles, 'filesDir' | 'ownDataDir'>): () => void {
  const own = readStat(process.pid);
  const record: InstanceRecord = { instanceId, pid: process.pid, pidStartTime: own?.startTime ?? '', startedAt: new Date().toISOString() };
  if (files) Object.assign(record, { filesDir: files.filesDir, ownDataDir: files.ownDataDir });
  const file = join(dir, `${instanceId}.json`);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(record) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
  return () => rmSync(file, { force: true });
}

function readRecords(dir: string): { file: string; record: InstanceRecord }[] {
  const out: { file: string; record: InstanceRecord }[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.json')) continue;
    const file = join(dir, name);
    try {
      const r = JSON.parse(readFileSync(file, 'utf8')) as Partial<InstanceRecord>;
      if (typeof r.instanceId === 'string' && ID.test(r.instanceId) && Number.isInteger(r.pid) && (r.pid as number) > 0 && typeof r.pidStartTime === 'string') {
        out.push({ file, record: r as InstanceRecord });
      }
    } catch {
      // unreadable or half-written: not ours to judge
    }
  }
  return out;
}

/** The server of a record still runs: its pid is alive and started when the record says (not a reused pid). */
export function instanceAlive(record: InstanceRecord): boolean {
  const stat = readStat(record.pid);
  return stat !== null && stat.state !== 'Z' && (record.pidStartTime === '' || stat.startTime === record.pidStartTime);
}

/**
 * Find the instances of `dir` whose server is gone, kill what they left
 * running (tagged processes and their groups), remove their files and their records.
 */
export async function recoverPreviousInstances(dir: string, killGraceMs: number): Promise<RecoveryReport> {
  prepareInstanceDir(dir);
  const dead = readRecords(dir).filter(({ record }) => !instanceAlive(record));
  if (dead.length === 0) return { deadInstances: [], orphans: [], survivors: [], filesRemoved: [] };
  const orphans = findTagged(new Set(dead.map((d) => d.record.instanceId)));
  const survivors = orphans.length > 0 ? await killOrphans(orphans, killGraceMs) : [];
  // A record whose processes could not all be killed stays, for the next start to try again.
  const left = new Set(orphans.filter((o) => survivors.includes(o.pid)).map((o) => o.instanceId));
  const filesRemoved: string[] = [];
  for (const { file, record } of dead) {
    if (left.has(record.instanceId)) continue;
    if (typeof record.filesDir === 'string' && removeInstanceFiles({ filesDir: record.filesDir, ownDataDir: record.ownDataDir === true }, record.instanceId)) {
      filesRemoved.push(record.filesDir);
    }
    rmSync(file, { force: true });
  }
  return { deadInstances: dead.map((d) => d.record), orphans, survivors, filesRemoved };
}
