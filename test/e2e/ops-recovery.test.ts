import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { findTagged, instanceAlive, type InstanceRecord } from '../../src/ops/recovery.js';
import { membersOfGroup, waitFor } from '../helpers/proc.js';
import { liveMembers, startExpectingRefusal, startServer, stopServer, tempInstanceDir, type ServerProcess } from '../helpers/server.js';

const startTimeOf = (pid: number): string => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]!;
};

/** A pid that surely belonged to a process that has ended (one we started and saw exit). */
function deadPid(): number {
  const r = spawnSync('true');
  return r.pid!;
}

const planted: ChildProcess[] = [];
/** Start a detached process (its own session and group) with an optional EXECD_INSTANCE marker, as a job of that instance would be. */
function plant(command: string, marker?: string): ChildProcess {
  const child = spawn('/bin/sh', ['-c', command], {
    detached: true,
    stdio: 'ignore',
    env: { PATH: process.env.PATH!, ...(marker ? { EXECD_INSTANCE: marker } : {}) },
  });
  planted.push(child);
  return child;
}
const exitOf = (c: ChildProcess) => (c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : once(c, 'exit').then(() => undefined));

let server: ServerProcess | undefined;
afterEach(async () => {
  stopServer(server);
  server = undefined;
  // Only what this test planted, by its own group.
  for (const c of planted.splice(0)) {
    if (c.exitCode === null && c.signalCode === null) {
      try {
        process.kill(-c.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
});

function writeRecord(dir: string, record: InstanceRecord): string {
  const file = join(dir, `${record.instanceId}.json`);
  writeFileSync(file, JSON.stringify(record), { mode: 0o600 });
  return file;
}

describe('start-up recovery', () => {
  it('kills the process groups a crashed instance left running, logs them, and touches nothing else', async () => {
    const dir = tempInstanceDir();
    // A crashed instance: its record names a server pid that is gone.
    const crashed: InstanceRecord = { instanceId: randomUUID(), pid: deadPid(), pidStartTime: '1', startedAt: new Date(0).toISOString() };
    const crashedFile = writeRecord(dir, crashed);
    // A live instance (this test process stands in for its server): its processes must survive.
    const live: InstanceRecord = {
      instanceId: randomUUID(), pid: process.pid, pidStartTime: startTimeOf(process.pid), startedAt: new Date().toISOString(),
    };
    const liveFile = writeRecord(dir, live);

    // The orphan: a job of the crashed instance, with a grandchild in its group (the grandchild keeps the marker too).
    const orphan = plant('sleep 300 & exec sleep 300', crashed.instanceId);
    await waitFor(() => membersOfGroup(orphan.pid!).length === 2);
    const orphanGroup = membersOfGroup(orphan.pid!);
    // An untagged process and a job of the live instance: never touched.
    const untagged = plant('exec sleep 300');
    const liveJob = plant('exec sleep 300', live.instanceId);
    await waitFor(() => findTagged(new Set([crashed.instanceId, live.instanceId])).length === 3);

    server = await startServer({ EXECD_INSTANCE_DIR: dir });
    const line = await server.waitForLog((l) => l.msg.startsWith('recovery:'));
    expect(line.level).toBe(40);
    expect(line.msg).toMatch(/killed 2 process\(es\)/);
    expect(line.previousInstance).toBe(crashed.instanceId);
    expect(line.previousPid).toBe(crashed.pid);
    expect((line.killed as { pid: number }[]).map((k) => k.pid).sort()).toEqual([...orphanGroup].sort());
    // Logged after the URL line: the first line still names where execd listens.
    expect(server.logs[0]!.msg).toMatch(/^execd listening on /);

    await exitOf(orphan);
    expect(orphan.signalCode).toBe('SIGTERM');
    expect(await waitFor(() => liveMembers(orphan.pid!).length === 0, 3000)).toBe(true);
    expect(untagged.exitCode).toBeNull();
    expect(untagged.signalCode).toBeNull();
    expect(liveJob.exitCode).toBeNull();
    expect(liveJob.signalCode).toBeNull();

    // The crashed record is gone, the live one stays, and this server has its own.
    expect(existsSync(crashedFile)).toBe(false);
    expect(existsSync(liveFile)).toBe(true);
    const info = (await (await server.api('/v1/info')).json()) as { pid: number };
    const own = JSON.parse(readFileSync(join(dir, `${server.logs.find((l) => l.msg === 'execd ready')!.instanceId}.json`), 'utf8')) as InstanceRecord;
    expect(own.pid).toBe(info.pid);
    expect(instanceAlive(own)).toBe(true);

    const metrics = await (await server.api('/metrics')).text();
    expect(metrics).toMatch(/^execd_recovered_processes_total 2$/m);
  });

  it('a crashed instance whose jobs had all ended: its record is dropped, nothing is killed', async () => {
    const dir = tempInstanceDir();
    const crashed: InstanceRecord = { instanceId: randomUUID(), pid: deadPid(), pidStartTime: '1', startedAt: new Date(0).toISOString() };
    const file = writeRecord(dir, crashed);
    server = await startServer({ EXECD_INSTANCE_DIR: dir });
    const line = await server.waitForLog((l) => l.msg.startsWith('recovery:'));
    expect(line.msg).toMatch(/left nothing running/);
    expect(existsSync(file)).toBe(false);
  });

  it('a record whose pid now belongs to another process (pid reuse) counts as dead; the right start time as alive', () => {
    const me = startTimeOf(process.pid);
    expect(instanceAlive({ instanceId: 'x', pid: process.pid, pidStartTime: me, startedAt: '' })).toBe(true);
    expect(instanceAlive({ instanceId: 'x', pid: process.pid, pidStartTime: String(Number(me) + 1), startedAt: '' })).toBe(false);
    expect(instanceAlive({ instanceId: 'x', pid: deadPid(), pidStartTime: me, startedAt: '' })).toBe(false);
  });

  it('refuses an EXECD_INSTANCE_DIR that is not a directory, or that other users can write, with one line', async () => {
    const dir = tempInstanceDir();
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'x');
    const open = join(dir, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    for (const [path, why] of [
      [file, /cannot create|not a directory/],
      [open, /writable by other users/],
    ] as const) {
      const { code, stderr } = await startExpectingRefusal({ EXECD_INSTANCE_DIR: path });
      expect(code).toBe(2);
      expect(stderr).toMatch(/^execd: invalid setting EXECD_INSTANCE_DIR: /);
      expect(stderr).toMatch(why);
      expect(stderr.trim().split('\n')).toHaveLength(1);
    }
    expect(statSync(open).mode & 0o777).toBe(0o777); // refused, never changed
  });
});
