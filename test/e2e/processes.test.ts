import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Process } from '../../src/schemas/processes.js';
import { parseCmdline, parseStat, parseStatus } from '../../src/ops/proc.js';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';

let t: TestApp;
beforeAll(async () => {
  t = await startApp();
});
afterAll(async () => {
  await t.close();
});

/** Children this file started; killed by pid after each test. */
const children: ChildProcess[] = [];
const tempDirs: string[] = [];
afterEach(() => {
  for (const child of children.splice(0)) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const dir of tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function startSleep(file = 'sleep', argv0?: string): ChildProcess {
  const child = spawn(file, ['30'], { detached: true, stdio: 'ignore', ...(argv0 ? { argv0 } : {}) });
  children.push(child);
  child.on('error', () => {});
  return child;
}

async function getProcess(pid: number): Promise<{ status: number; body: Process }> {
  const res = await t.http.get(`/v1/processes/${pid}`).set(AUTH);
  return { status: res.status, body: res.body as Process };
}

/** Poll until the process has exec'd (its name is `name`) and sleeps. */
async function waitUntilSleeping(pid: number, name: string): Promise<Process> {
  let last: Process | undefined;
  await waitFor(async () => {
    const res = await getProcess(pid);
    last = res.status === 200 ? res.body : undefined;
    return last?.name === name && last.state === 'S';
  });
  expect(last).toMatchObject({ pid, name, state: 'S' });
  return last!;
}

const selfArgv = () => readFileSync('/proc/self/cmdline', 'utf8').split('\0').slice(0, -1);

describe('GET /v1/processes', () => {
  it('lists the host processes sorted by pid, this test process among them', async () => {
    const res = await t.http.get('/v1/processes').set(AUTH);
    expect(res.status).toBe(200);
    const items = res.body.items as Process[];
    expect(items.length).toBeGreaterThan(1);
    for (let i = 1; i < items.length; i++) expect(items[i]!.pid).toBeGreaterThan(items[i - 1]!.pid);

    const self = items.find((p) => p.pid === process.pid);
    expect(self).toMatchObject({
      pid: process.pid,
      ppid: process.ppid,
      uid: process.getuid!(),
      gid: process.getgid!(),
      argv: selfArgv(),
      execd: false,
      jobId: null,
    });
    expect(self!.argv).toContain(process.argv[process.argv.length - 1]);
    expect(self!.rssBytes).toBeGreaterThan(1 << 20);
    expect(self!.cpuMs).toBeGreaterThan(0);
    expect(Date.parse(self!.startedAt)).toBeLessThanOrEqual(Date.now());
    expect(Date.parse(self!.startedAt)).toBeGreaterThan(Date.now() - process.uptime() * 1000 - 5000);
  });

  it('shows a spawned process as its own group leader, sleeping, not started by execd', async () => {
    const before = Date.now();
    const child = startSleep();
    const pid = child.pid!;
    const p = await waitUntilSleeping(pid, 'sleep');
    expect(p).toMatchObject({ ppid: process.pid, pgid: pid, uid: process.getuid!(), argv: ['sleep', '30'], execd: false, jobId: null });
    // btime has whole-second resolution.
    expect(Date.parse(p.startedAt)).toBeGreaterThanOrEqual(before - 2000);
    expect(Date.parse(p.startedAt)).toBeLessThanOrEqual(Date.now() + 1000);

    const list = await t.http.get('/v1/processes').set(AUTH);
    expect((list.body.items as Process[]).find((x) => x.pid === pid)).toMatchObject({ pgid: pid, name: 'sleep' });
  });

  it('parses a name containing spaces and parentheses', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'execd-proc-'));
    tempDirs.push(dir);
    const name = 'x) (y z';
    symlinkSync('/bin/sleep', join(dir, name));
    const child = startSleep(join(dir, name), 'sleep');
    const pid = child.pid!;
    const p = await waitUntilSleeping(pid, name);
    expect(p).toMatchObject({ ppid: process.pid, pgid: pid, uid: process.getuid!(), argv: ['sleep', '30'] });
  });

  it('marks a process started through POST /v1/run as execd, without a jobId', async () => {
    const run = t.http.post('/v1/run').set(AUTH).send({ argv: ['sleep', '2'] }).then((r) => r);
    let found: Process | undefined;
    await waitFor(async () => {
      const res = await t.http.get('/v1/processes?execd=true').set(AUTH);
      found = (res.body.items as Process[]).find((p) => p.argv[0] === 'sleep' && p.argv[1] === '2');
      return found !== undefined;
    });
    expect(found).toMatchObject({ execd: true, jobId: null, ppid: process.pid, name: 'sleep' });
    expect(found!.pgid).toBe(found!.pid);

    const one = await getProcess(found!.pid);
    expect(one.body).toMatchObject({ pid: found!.pid, execd: true, jobId: null });
    const others = await t.http.get('/v1/processes?execd=false').set(AUTH);
    expect((others.body.items as Process[]).some((p) => p.pid === found!.pid)).toBe(false);
    expect((others.body.items as Process[]).some((p) => p.pid === process.pid)).toBe(true);

    const done = await run;
    expect(done.status).toBe(200);
    expect(done.body.pid).toBe(found!.pid);
  });

  it('filters by user, pgid and execd', async () => {
    const child = startSleep();
    const pid = child.pid!;
    await waitUntilSleeping(pid, 'sleep');

    const byGroup = await t.http.get(`/v1/processes?pgid=${pid}`).set(AUTH);
    expect(byGroup.status).toBe(200);
    expect((byGroup.body.items as Process[]).map((p) => p.pid)).toEqual([pid]);

    const uid = process.getuid!();
    const byUser = await t.http.get(`/v1/processes?user=${uid}&execd=false`).set(AUTH);
    expect(byUser.status).toBe(200);
    const items = byUser.body.items as Process[];
    expect(items.every((p) => p.uid === uid && !p.execd)).toBe(true);
    expect(items.map((p) => p.pid)).toEqual(expect.arrayContaining([process.pid, pid]));

    const nobody = await t.http.get('/v1/processes?user=4294967295').set(AUTH);
    expect(nobody.status).toBe(200);
    expect(nobody.body.items).toEqual([]);
  });

  it.each([
    'user=abc',
    'user=-1',
    'user=1.5',
    'user=1e3',
    'user=',
    'user=0x10',
    'user=99999999999',
    'user=1&user=2',
    'pgid=abc',
    'pgid=-5',
    'execd=yes',
    'execd=1',
    'execd=TRUE',
    'unknown=1',
  ])('refuses ?%s with 400 VALIDATION_FAILED', async (query) => {
    const res = await t.http.get(`/v1/processes?${query}`).set(AUTH);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body.code).toBe('VALIDATION_FAILED');
  });

  it('answers 401 without a token', async () => {
    const res = await t.http.get('/v1/processes');
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('UNAUTHORIZED');
  });
});

describe('GET /v1/processes/{pid}', () => {
  it('returns this test process', async () => {
    const res = await getProcess(process.pid);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ pid: process.pid, ppid: process.ppid, uid: process.getuid!(), argv: selfArgv() });
  });

  it('answers 404 NOT_FOUND for a pid that does not exist', async () => {
    let pid = 2147483646;
    while (existsSync(`/proc/${pid}`)) pid--;
    const res = await t.http.get(`/v1/processes/${pid}`).set(AUTH);
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body).toMatchObject({ code: 'NOT_FOUND', status: 404 });
  });

  it('answers 404 for a thread id, which is not a process', async () => {
    const tids = readdirSync('/proc/self/task').map(Number).filter((tid) => tid !== process.pid);
    expect(tids.length).toBeGreaterThan(0);
    const res = await getProcess(tids[0]!);
    expect(res.status).toBe(404);
  });

  it('answers 404 once the process has exited and been reaped', async () => {
    const child = startSleep();
    const pid = child.pid!;
    await waitUntilSleeping(pid, 'sleep');
    const exited = new Promise((r) => child.once('exit', r));
    process.kill(pid, 'SIGKILL');
    await exited;
    expect((await getProcess(pid)).status).toBe(404);
  });

  it.each(['abc', '-1', '0', '1.5', '1e3', '01', '%20', '99999999999'])('refuses pid %s with 400 VALIDATION_FAILED', async (pid) => {
    const res = await t.http.get(`/v1/processes/${pid}`).set(AUTH);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
  });

  it('answers 401 without a token', async () => {
    const res = await t.http.get(`/v1/processes/${process.pid}`);
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('UNAUTHORIZED');
  });
});

describe('/proc parsing', () => {
  const tail = 'S 1 42 42 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 5000 1000000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0';

  it('splits stat at the last parenthesis', () => {
    expect(parseStat(`77 (a) (b) c) ${tail}\n`)).toMatchObject({
      pid: 77,
      name: 'a) (b) c',
      state: 'S',
      ppid: 1,
      pgid: 42,
      utime: 7,
      stime: 3,
      starttime: 5000,
      rssPages: 250,
    });
    expect(parseStat('77 (truncated')).toBeNull();
    expect(parseStat('77 (short) S 1 2')).toBeNull();
  });

  it('reads the real ids and VmRSS from status', () => {
    const status = 'Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t77\nNgid:\t0\nPid:\t77\nPPid:\t1\nUid:\t1000\t0\t0\t0\nGid:\t100\t0\t0\t0\nVmRSS:\t    1234 kB\n';
    expect(parseStatus(status)).toEqual({ tgid: 77, uid: 1000, gid: 100, rssBytes: 1234 * 1024 });
    expect(parseStatus('Name:\tkthreadd\nTgid:\t2\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n')).toEqual({ tgid: 2, uid: 0, gid: 0 });
  });

  it('splits cmdline on NUL', () => {
    expect(parseCmdline(Buffer.from('sleep\u000030\u0000'))).toEqual(['sleep', '30']);
    expect(parseCmdline(Buffer.from('a\u0000\u0000b\u0000'))).toEqual(['a', '', 'b']);
    expect(parseCmdline(Buffer.alloc(0))).toEqual([]);
  });
});
