import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { recoverPreviousInstances, type InstanceRecord } from '../../src/ops/recovery.js';
import { startServer, stopServer, tempDataDir, tempInstanceDir, type ServerProcess } from '../helpers/server.js';

/**
 * Issue 14, item 4 (and issue 15's recovery records): a server killed after spilling leaves its files in
 * `<data dir>/<instance id>/`; the next start with the same data directory (the same instance records)
 * removes them, and never the files of an instance still running. Another data directory is another set
 * of records: its starts recover nothing of this one.
 */

const servers: ServerProcess[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) stopServer(s);
});

async function start(env: Record<string, string>): Promise<{ server: ServerProcess; instanceId: string; filesDir: string }> {
  const server = await startServer({ EXECD_OUTPUT_MEMORY_BYTES: '4096', ...env });
  servers.push(server);
  const ready = await server.waitForLog((l) => l.msg === 'execd ready');
  return { server, instanceId: String(ready.instanceId), filesDir: String(ready.dataDir) };
}

/** A finished job whose 100000 bytes spilled to its file. */
async function spill(s: ServerProcess, filesDir: string): Promise<string> {
  const res = await s.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ argv: ['sh', '-c', 'yes spilled | head -c 100000'] }) });
  const { id } = (await res.json()) as Job;
  for (;;) {
    const job = (await (await s.api(`/v1/jobs/${id}?waitMs=5000`)).json()) as Job;
    if (job.state === 'succeeded') break;
    expect(['queued', 'running']).toContain(job.state);
  }
  expect(statSync(join(filesDir, 'jobs', `${id}.stdout`)).size).toBe(100000);
  return id;
}

async function crash(s: ServerProcess): Promise<void> {
  s.child.kill('SIGKILL');
  await s.exited;
}

const recoveryLines = (s: ServerProcess) => s.logs.filter((l) => l.msg.startsWith('recovery:'));

describe('start-up recovery removes the files of dead instances', () => {
  it('a SIGKILLed server’s files go at the next start with the same data directory; a live one’s stay; another data directory recovers nothing', async () => {
    const dataDir = tempDataDir();
    const a = await start({ EXECD_DATA_DIR: dataDir });
    await spill(a.server, a.filesDir);
    const b = await start({ EXECD_DATA_DIR: dataDir }); // live through all of it
    const bJob = await spill(b.server, b.filesDir);
    await crash(a.server);
    expect(existsSync(a.filesDir)).toBe(true); // a crash leaves them

    // Another data directory, another set of instance records: A is none of its business.
    const other = await start({ EXECD_DATA_DIR: tempDataDir() });
    await other.server.waitForLog((l) => l.msg === 'execd ready');
    expect(recoveryLines(other.server)).toEqual([]);
    expect(existsSync(a.filesDir)).toBe(true);

    const c = await start({ EXECD_DATA_DIR: dataDir });
    const line = await c.server.waitForLog((l) => l.msg.startsWith('recovery:'));
    expect(line).toMatchObject({ level: 40, previousInstance: a.instanceId, filesRemoved: a.filesDir });
    expect(recoveryLines(c.server)).toHaveLength(1); // B is alive: not recovered
    expect(existsSync(a.filesDir)).toBe(false);
    expect(readdirSync(join(dataDir, 'instances')).sort()).toEqual([`${b.instanceId}.json`, `${c.instanceId}.json`].sort());

    // B's files are untouched, and B still serves them.
    expect(statSync(join(b.filesDir, 'jobs', `${bJob}.stdout`)).size).toBe(100000);
    const out = await (await b.server.api(`/v1/jobs/${bJob}/output`)).text();
    expect(out).toBe('spilled\n'.repeat(12500));
    expect(readdirSync(dataDir).sort()).toEqual([b.instanceId, c.instanceId, 'instances'].sort());
  });

  it('without EXECD_DATA_DIR the crashed instance’s own data directory goes too', async () => {
    const instanceDir = tempInstanceDir();
    const a = await start({ EXECD_DATA_DIR: '', EXECD_INSTANCE_DIR: instanceDir });
    await spill(a.server, a.filesDir);
    await crash(a.server);
    const ownDataDir = dirname(a.filesDir);
    expect(basename(ownDataDir)).toMatch(/^execd-[A-Za-z0-9]{6}$/);
    expect(existsSync(ownDataDir)).toBe(true);

    const b = await start({ EXECD_DATA_DIR: '', EXECD_INSTANCE_DIR: instanceDir });
    const line = await b.server.waitForLog((l) => l.msg.startsWith('recovery:'));
    expect(line).toMatchObject({ previousInstance: a.instanceId, filesRemoved: a.filesDir });
    expect(existsSync(ownDataDir)).toBe(false);
    expect(existsSync(b.filesDir)).toBe(true);
    // A clean stop takes B's away as well.
    b.server.child.kill('SIGTERM');
    await b.server.exited;
    expect(existsSync(dirname(b.filesDir))).toBe(false);
    expect(readdirSync(instanceDir)).toEqual([]);
  });

  it('removes only a directory of the record’s shape: named after the dead instance, a real directory of this user', async () => {
    const instanceDir = tempInstanceDir();
    const dataDir = tempDataDir();
    const deadPid = spawnSync('true').pid!;
    const dead = (filesDir: string): InstanceRecord => ({ instanceId: randomUUID(), pid: deadPid, pidStartTime: '1', startedAt: new Date(0).toISOString(), filesDir });
    const keep = join(dataDir, 'precious');
    mkdirSync(keep);
    writeFileSync(join(keep, 'data'), 'x');
    const wrongName = dead(keep); // a directory that is not named after its instance
    const viaLink = dead('');
    viaLink.filesDir = join(dataDir, viaLink.instanceId);
    symlinkSync(keep, viaLink.filesDir); // a symlink in its place
    const relative = dead('');
    relative.filesDir = relative.instanceId;
    const real = dead('');
    real.filesDir = join(dataDir, real.instanceId);
    mkdirSync(join(real.filesDir, 'jobs'), { recursive: true });
    for (const r of [wrongName, viaLink, relative, real]) writeFileSync(join(instanceDir, `${r.instanceId}.json`), JSON.stringify(r));

    const report = await recoverPreviousInstances(instanceDir, 100);
    expect(report.deadInstances).toHaveLength(4);
    expect(report.filesRemoved).toEqual([real.filesDir]);
    expect(existsSync(real.filesDir)).toBe(false);
    expect(existsSync(join(keep, 'data'))).toBe(true);
    expect(readdirSync(instanceDir)).toEqual([]);
  });
});
