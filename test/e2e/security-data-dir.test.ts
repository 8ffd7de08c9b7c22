import { chmodSync, chownSync, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Response as SuperagentResponse } from 'superagent';
import type { Job } from '../../src/schemas/jobs.js';
import { AUTH, ON_REDIS } from '../helpers/app.js';
import { lookupUser } from '../../src/security/identity.js';
import { startExpectingRefusal, startServer, stopServer, type ServerProcess } from '../helpers/server.js';
import { settle, startJobsApp, submit, waitRunning } from '../helpers/jobs.js';

/**
 * Issue 13, item 1: the data directory. A run-as child (or anyone on the host) must not be able to make
 * the server write a job's output through a symlink, nor make GET /output serve another file; a data
 * directory that someone else owns or can write stops the start with one line.
 */

const isRoot = process.geteuid?.() === 0;
const nobody = lookupUser('nobody');
const work = mkdtempSync(join(tmpdir(), 'execd-datadir-'));
const cleanup: string[] = [work];
afterAll(() => cleanup.forEach((d) => rmSync(d, { recursive: true, force: true })));
let n = 0;
const fresh = (name: string) => join(work, `${name}-${n++}`);

let server: ServerProcess | undefined;
afterEach(() => {
  stopServer(server);
  server = undefined;
});

const modeOf = (path: string) => lstatSync(path).mode & 0o777;

/** A job of a real server, once terminal. */
async function settleOn(s: ServerProcess, id: string): Promise<Job> {
  for (;;) {
    const job = (await (await s.api(`/v1/jobs/${id}?waitMs=5000`)).json()) as Job;
    if (!['queued', 'running'].includes(job.state)) return job;
  }
}

describe('the data directory is made at start, private, and checked', () => {
  it('EXECD_DATA_DIR is created at start (0700), with this instance’s own directory in it, before any output', async () => {
    const dir = join(fresh('made'), 'deeper', 'data');
    server = await startServer({ EXECD_DATA_DIR: dir });
    const ready = await server.waitForLog((l) => l.msg === 'execd ready');
    expect(modeOf(dir)).toBe(0o700);
    expect(ready.dataDir).toBe(join(dir, String(ready.instanceId)));
    expect(modeOf(String(ready.dataDir))).toBe(0o700);
    expect(modeOf(join(dir, 'instances'))).toBe(0o700); // EXECD_INSTANCE_DIR's default: per data directory
  });

  it('unset, it is a fresh directory with an unguessable name (mkdtemp), not <tmpdir>/execd-<pid>', async () => {
    server = await startServer({ EXECD_DATA_DIR: '' });
    const ready = await server.waitForLog((l) => l.msg === 'execd ready');
    const filesDir = String(ready.dataDir);
    const dataDir = dirname(filesDir);
    expect(dirname(dataDir)).toBe(tmpdir());
    expect(basename(dataDir)).toMatch(/^execd-[A-Za-z0-9]{6}$/);
    expect(basename(dataDir)).not.toBe(`execd-${server.child.pid}`);
    expect(existsSync(join(tmpdir(), `execd-${server.child.pid}`))).toBe(false);
    expect([modeOf(dataDir), modeOf(filesDir)]).toEqual([0o700, 0o700]);
    // A clean shutdown takes it away again.
    server.child.kill('SIGTERM');
    await server.exited;
    expect(existsSync(dataDir)).toBe(false);
  });

  it.runIf(isRoot && nobody !== null)('refuses a pre-created EXECD_DATA_DIR that another user owns, with one line (root)', async () => {
    const dir = fresh('theirs');
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, nobody!.uid, nobody!.gid);
    const { code, stderr } = await startExpectingRefusal({ EXECD_DATA_DIR: dir, EXECD_INSTANCE_DIR: fresh('inst') });
    expect(code).toBe(2);
    expect(stderr).toBe(`execd: invalid setting EXECD_DATA_DIR: ${dir} belongs to uid ${nobody!.uid}, not to this server's uid 0\n`);
  });

  it('refuses an EXECD_DATA_DIR that group or others can write, or that is a symlink, with one line', async () => {
    // Five refused starts, side by side: one after another they took most of 30 s on a loaded machine.
    const open = [0o770, 0o777, 0o1777, 0o720].map(async (mode) => {
      const dir = fresh('open');
      mkdirSync(dir);
      chmodSync(dir, mode);
      const { code, stderr } = await startExpectingRefusal({ EXECD_DATA_DIR: dir, EXECD_INSTANCE_DIR: fresh('inst') });
      expect([code, stderr]).toEqual([
        2,
        `execd: invalid setting EXECD_DATA_DIR: ${dir} is writable by other users; give a directory only this server's user can write (mode 0700)\n`,
      ]);
    });
    const target = fresh('target');
    mkdirSync(target, { mode: 0o700 });
    const link = fresh('link');
    symlinkSync(target, link);
    const linked = startExpectingRefusal({ EXECD_DATA_DIR: link, EXECD_INSTANCE_DIR: fresh('inst') });
    await Promise.all(open);
    const { code, stderr } = await linked;
    expect([code, stderr]).toEqual([2, `execd: invalid setting EXECD_DATA_DIR: ${link} is not a directory\n`]);
  }, 90_000);
});

/**
 * The attack of issue 13 against a root server with EXECD_RUN_AS=nobody and the default data directory:
 * a run as nobody creates <tmpdir>/execd-<server pid>/jobs (the old default) and, knowing even the real
 * directory, plants `jobs/<id>.stdout -> <root's file>` before the job spills, then swaps the spilled
 * file for a symlink to a root-only file. Nothing is written through, nothing but the job's bytes is served.
 */
describe.runIf(isRoot && nobody !== null && !ON_REDIS)('a run-as child cannot reach the output files (root)', () => {
  it('planting symlinks before and after a spill: never written through, never served', async () => {
    // Where nobody can see it (`work` is root's 0700).
    const gate = mkdtempSync(join(tmpdir(), 'execd-gate-'));
    chmodSync(gate, 0o777);
    cleanup.push(gate);
    const target = fresh('root-file');
    writeFileSync(target, 'root file, unchanged\n', { mode: 0o644 });
    const secret = fresh('root-secret');
    writeFileSync(secret, 'ROOT SECRET\n', { mode: 0o600 });

    server = await startServer({ EXECD_DATA_DIR: '', EXECD_RUN_AS: 'nobody', EXECD_QUEUES: 'default:2', EXECD_OUTPUT_MEMORY_BYTES: '4096' });
    const ready = await server.waitForLog((l) => l.msg === 'execd ready');
    const realJobs = join(String(ready.dataDir), 'jobs');
    const oldDefault = join(tmpdir(), `execd-${server.child.pid}`);
    cleanup.push(oldDefault); // the attacker makes it
    const run = async (script: string) => {
      const res = await server!.api('/v1/run', { method: 'POST', body: JSON.stringify({ argv: ['sh', '-c', script], cwd: '/' }) });
      expect(res.status).toBe(200);
      return (await res.json()) as { returncode: number; uid: number; stdout: string; stderr: string };
    };

    // The victim (also run as nobody, as every job here) waits for the gate, then writes 200000 bytes: it spills.
    const res = await server.api('/v1/jobs', {
      method: 'POST',
      body: JSON.stringify({ argv: ['sh', '-c', `until [ -e ${gate}/open ]; do sleep 0.02; done; yes victim | head -c 200000`], cwd: '/' }),
    });
    expect(res.status).toBe(202);
    const victim = ((await res.json()) as Job).id;

    // Before the spill: pre-create the old default directory, and plant the symlink there and in the real one.
    const before = await run(
      `mkdir -m 777 ${oldDefault} ${oldDefault}/jobs; ln -s ${target} ${oldDefault}/jobs/${victim}.stdout; ` +
        `mkdir -p ${realJobs} 2>&1; ln -s ${target} ${realJobs}/${victim}.stdout 2>&1; id -u`,
    );
    expect(before.uid).toBe(nobody!.uid);
    expect(before.stdout).toMatch(/Permission denied/);
    writeFileSync(join(gate, 'open'), '');
    const done = await settleOn(server, victim);
    expect(done).toMatchObject({ state: 'succeeded', outputBytes: { stdout: 200000 }, result: { truncated: { stdout: false } } });
    expect(readFileSync(target, 'utf8')).toBe('root file, unchanged\n');
    expect(statSync(join(realJobs, `${victim}.stdout`)).size).toBe(200000);

    // After the spill: swap the spilled file for a symlink to a root-only file, wherever it may be.
    const after = await run(
      `for d in ${oldDefault}/jobs ${realJobs}; do rm -f $d/${victim}.stdout 2>&1; ln -s ${secret} $d/${victim}.stdout 2>&1; done; ls ${realJobs} 2>&1; true`,
    );
    expect(after.stdout).toMatch(/Permission denied/);
    const out = await server.api(`/v1/jobs/${victim}/output`);
    const body = await out.text();
    expect(body).not.toContain('ROOT SECRET');
    expect(out.status).toBe(200);
    expect(body).toBe('victim\n'.repeat(200000 / 7 + 1).slice(0, 200000));
  }, 60_000);
});

/**
 * Even a name planted in the server's own directory (which only its user can write) is never followed: the
 * file is created O_EXCL|O_NOFOLLOW, and read O_NOFOLLOW as the very file created (device and inode).
 */
describe.skipIf(ON_REDIS)('output files are made and read by the server alone', () => {
  it('a symlink already at the file name is not written through: the spill fails, result.truncatedReason says so', async () => {
    const t = await startJobsApp({ EXECD_OUTPUT_MEMORY_BYTES: '1024' });
    try {
      const target = fresh('planted-target');
      writeFileSync(target, 'unchanged\n');
      const job = await submit(t, { argv: ['sh', '-c', 'read go; yes x | head -c 100000'], stdin: { stream: true } });
      symlinkSync(target, join(t.app.services.files.filesDir, 'jobs', `${job.id}.stdout`));
      await waitRunning(t, job.id);
      await t.app.services.jobs.writeStdin(job.id, Buffer.from('go\n'));
      await t.app.services.jobs.writeStdin(job.id, null);
      const done = await settle(t, job.id);
      expect(done).toMatchObject({
        state: 'succeeded',
        result: { exitCode: 0, truncated: { stdout: true }, truncatedReason: { stdout: 'write_failed', stderr: null } },
      });
      expect(done.outputBytes.stdout).toBeLessThanOrEqual(1024); // what memory held
      expect(readFileSync(target, 'utf8')).toBe('unchanged\n');
      // The planted name is not the server's: DELETE leaves it (and what it points to) alone.
      await t.http.delete(`/v1/jobs/${job.id}`).set(AUTH).expect(204);
      expect(lstatSync(join(t.app.services.files.filesDir, 'jobs', `${job.id}.stdout`)).isSymbolicLink()).toBe(true);
    } finally {
      await t.close();
    }
  });

  it('a spilled file swapped for a symlink or for another file is not served', async () => {
    const t = await startJobsApp({ EXECD_OUTPUT_MEMORY_BYTES: '1024' });
    try {
      const secret = fresh('secret');
      writeFileSync(secret, 'SECRET '.repeat(2000), { mode: 0o600 });
      const job = await settle(t, (await submit(t, { argv: ['sh', '-c', 'yes x | head -c 10000'] })).id);
      const file = join(t.app.services.files.filesDir, 'jobs', `${job.id}.stdout`);
      expect(statSync(file).size).toBe(10000);
      expect((await t.http.get(`/v1/jobs/${job.id}/output`).set(AUTH)).status).toBe(200);
      for (const swap of [() => symlinkSync(secret, file), () => linkSync(secret, file)]) {
        unlinkSync(file);
        swap();
        const res = await t.http.get(`/v1/jobs/${job.id}/output`).set(AUTH).buffer(true).parse((r, cb) => {
          let data = '';
          r.on('data', (c: Buffer) => (data += c.toString()));
          r.on('end', () => cb(null, data));
        });
        expect(String(res.body)).not.toContain('SECRET');
        expect(res.status).toBe(500);
      }
    } finally {
      await t.close();
    }
  });
});

/** The Redis backend's copies of other nodes' output (an API node's mirror files) are made and read the same way. */
describe.runIf(ON_REDIS)('mirror files of the Redis backend', () => {
  it('a mirror file swapped for a symlink or another file is not served; a name planted before is not written through', async () => {
    const t = await startJobsApp({ EXECD_OUTPUT_MEMORY_BYTES: '1024' });
    try {
      const mirrorDir = join(t.app.services.files.filesDir, 'mirror');
      expect(modeOf(t.app.services.files.filesDir)).toBe(0o700);
      const secret = fresh('secret');
      writeFileSync(secret, 'SECRET '.repeat(2000), { mode: 0o600 });
      const rawBody = (r: SuperagentResponse, cb: (err: Error | null, body: string) => void) => {
        let data = '';
        r.on('data', (c: Buffer) => (data += c.toString()));
        r.on('end', () => cb(null, data));
      };

      // Read through the API node: its mirror spills to <files>/mirror/<id>.stdout.
      const job = await settle(t, (await submit(t, { argv: ['sh', '-c', 'yes x | head -c 10000'] })).id);
      const first = await t.http.get(`/v1/jobs/${job.id}/output`).set(AUTH).buffer(true).parse(rawBody);
      expect([first.status, String(first.body).length]).toEqual([200, 10000]);
      const file = join(mirrorDir, `${job.id}.stdout`);
      expect(statSync(file).size).toBe(10000);
      for (const swap of [() => symlinkSync(secret, file), () => linkSync(secret, file)]) {
        unlinkSync(file);
        swap();
        const res = await t.http.get(`/v1/jobs/${job.id}/output`).set(AUTH).buffer(true).parse(rawBody);
        expect(String(res.body)).not.toContain('SECRET');
      }

      // A name planted before the mirror is made: the mirror's spill fails rather than write through it.
      const target = fresh('planted-target');
      writeFileSync(target, 'unchanged\n');
      const next = await submit(t, { argv: ['sh', '-c', 'sleep 0.5; yes y | head -c 10000'] });
      symlinkSync(target, join(mirrorDir, `${next.id}.stdout`));
      await settle(t, next.id);
      await t.http.get(`/v1/jobs/${next.id}/output`).set(AUTH).buffer(true).parse(rawBody);
      expect(readFileSync(target, 'utf8')).toBe('unchanged\n');
    } finally {
      await t.close();
    }
  });
});
