import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { membersOfGroup, waitFor } from '../helpers/proc.js';
import { liveMembers, SERVER_TOKEN, startExpectingRefusal, startServer, stopServer, tempInstanceDir, type ServerProcess } from '../helpers/server.js';

type Frame = { type: string; [key: string]: unknown };
type JobView = { id: string; state: string; pid: number | null; error: { code: string } | null; result: { signal: string | null } | null };

/** A WebSocket viewer that records every frame and how it closed. */
function viewer(url: string, path: string) {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}${path}`, { headers: { authorization: `Bearer ${SERVER_TOKEN}` } });
  const frames: Frame[] = [];
  ws.on('message', (data) => frames.push(JSON.parse(String(data)) as Frame));
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  const opened = new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, frames, closed, opened };
}


let server: ServerProcess | undefined;
afterEach(() => {
  for (const pgid of pgids) if (liveMembers(pgid).length > 0) process.kill(-pgid, 'SIGKILL'); // only if the test failed
  pgids = [];
  stopServer(server);
  server = undefined;
});
let pgids: number[] = [];

const GRACE_MS = 3000;
const KILL_GRACE_MS = 500;
/** What a shutdown may take beyond the grace: reaping, closing viewers and the HTTP server, exiting. */
const MARGIN_MS = 2000;

describe('graceful shutdown of a real server (SIGTERM)', () => {
  it('3 running, 100 queued, 2 viewers: every job terminal with a reason, no survivor, exit within the grace; a second SIGTERM is harmless', async () => {
    const instanceDir = tempInstanceDir();
    server = await startServer({
      EXECD_QUEUES: 'default:3',
      EXECD_SHUTDOWN_GRACE_MS: String(GRACE_MS),
      EXECD_KILL_GRACE_MS: String(KILL_GRACE_MS),
      EXECD_SHUTDOWN_TIMEOUT_MS: String(GRACE_MS + 5000),
      EXECD_INSTANCE_DIR: instanceDir,
      EXECD_LOG_LEVEL: 'debug',
    });
    const s = server;
    expect(readdirSync(instanceDir)).toHaveLength(1); // this instance's record

    // Viewer 1: every job's lifecycle events, from before the first job.
    const events = viewer(s.url, '/v1/events');
    await events.opened;

    const submit = async (command: string): Promise<JobView> => {
      const res = await s.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ command }) });
      expect(res.status).toBe(202);
      return (await res.json()) as JobView;
    };
    // Three that run until stopped: one ends on SIGTERM, one ignores it (SIGKILL at the grace), one has a grandchild in its group.
    const running = [await submit('sleep 300'), await submit("trap '' TERM; sleep 300"), await submit('sleep 300 & sleep 300')];
    const started = async (id: string) => {
      let job: JobView | undefined;
      await waitFor(async () => {
        job = (await (await s.api(`/v1/jobs/${id}`)).json()) as JobView;
        return job.state === 'running' && job.pid !== null;
      }, 10_000);
      return job!;
    };
    for (const [i, job] of running.entries()) running[i] = await started(job.id);
    pgids = running.map((j) => j.pid!);
    await waitFor(() => membersOfGroup(pgids[2]!).length >= 2); // the grandchild is there
    const queued: JobView[] = [];
    for (let i = 0; i < 100; i++) queued.push(await submit(`echo never ${i}`));
    expect(queued.every((j) => j.state === 'queued')).toBe(true);

    // Viewer 2: the output of a running job.
    const output = viewer(s.url, `/v1/jobs/${running[0]!.id}/stream`);
    await output.opened;

    const t0 = Date.now();
    s.child.kill('SIGTERM');
    // Readiness flips at once; liveness stays; new work is refused with SHUTTING_DOWN and Retry-After.
    await s.waitForLog((l) => l.msg.startsWith('shutting down'));
    const ready = await fetch(`${s.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { code: string }).code).toBe('SHUTTING_DOWN');
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    const refused = await s.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ command: 'echo late' }) });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(refused.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(((await refused.json()) as { code: string }).code).toBe('SHUTTING_DOWN');
    const metrics = await (await s.api('/metrics')).text();
    expect(metrics).toMatch(/^execd_draining 1$/m);

    // A second SIGTERM during the drain changes nothing: no early exit, no exit code 1.
    s.child.kill('SIGTERM');
    await s.waitForLog((l) => l.msg.startsWith('already shutting down'));
    await new Promise((r) => setTimeout(r, 300));
    expect(s.child.exitCode).toBeNull();

    const { code, signal } = await s.exited;
    const tookMs = Date.now() - t0;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(tookMs).toBeLessThan(GRACE_MS + MARGIN_MS);
    // The running jobs had their time: nothing was stopped before grace minus the kill grace.
    const term = s.logs.find((l) => l.msg.startsWith('shutdown grace: SIGTERM'))!;
    expect(term).toBeDefined();
    expect(Number(term.time) - t0).toBeGreaterThanOrEqual(GRACE_MS - KILL_GRACE_MS - 200);
    expect(s.logs.some((l) => l.msg.startsWith('shutdown grace over: SIGKILL'))).toBe(true); // the one that ignores SIGTERM

    // 0 survivors: every process group of every job is gone (zombies aside: dead, left to whoever inherited them).
    expect(await waitFor(() => pgids.every((g) => liveMembers(g).length === 0), 2000)).toBe(true);

    // Every job ended terminal, with a reason: the 100 queued and the 3 running were canceled for the shutdown.
    await events.closed;
    const finished = new Map(events.frames.filter((f) => f.type === 'finished').map((f) => [(f.job as JobView).id, f.job as JobView]));
    for (const job of [...running, ...queued]) {
      const end = finished.get(job.id);
      expect(end, `job ${job.id} has no finished event`).toBeDefined();
      expect(end!.state).toBe('canceled');
      expect(end!.error?.code).toBe('SHUTTING_DOWN');
    }
    expect(finished.get(running[1]!.id)!.result?.signal).toBe('SIGKILL');
    expect(finished.get(running[0]!.id)!.result?.signal).toBe('SIGTERM');
    expect(await events.closed).toBe(1001);

    // The output viewer got its exit frame (then 1000), or the server's close 1001.
    const closeCode = await output.closed;
    const exit = output.frames.find((f) => f.type === 'exit');
    if (exit) {
      expect(exit.state).toBe('canceled');
      expect(closeCode).toBe(1000);
    } else expect(closeCode).toBe(1001);

    // Logs: every job line names its job; the queued ones canceled one by one (debug) and counted (info).
    const jobLines = s.logs.filter((l) => /^(job |queued job )/.test(l.msg));
    expect(jobLines.length).toBeGreaterThanOrEqual(103 + 100);
    for (const l of jobLines) expect(l.jobId, JSON.stringify(l)).toEqual(expect.any(String));
    expect(s.logs.find((l) => l.msg === 'queued jobs canceled at shutdown')?.canceled).toBe(100);
    expect(s.logs.at(-1)?.msg).toBe('shut down');
    // A clean shutdown removes the instance record: nothing for the next start to recover.
    expect(readdirSync(instanceDir)).toHaveLength(0);
    expect(existsSync(instanceDir)).toBe(true);
  });

  it('SIGINT shuts down the same way, at once when nothing runs', async () => {
    server = await startServer({ EXECD_INSTANCE_DIR: tempInstanceDir() });
    const t0 = Date.now();
    server.child.kill('SIGINT');
    expect(await server.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(MARGIN_MS);
    expect(server.logs.find((l) => l.msg.startsWith('shutting down'))?.reason).toBe('SIGINT');
  });

  it('refuses settings that do not nest (kill grace < shutdown grace < shutdown timeout) with one line naming one', async () => {
    for (const [env, name] of [
      [{ EXECD_KILL_GRACE_MS: '5000', EXECD_SHUTDOWN_GRACE_MS: '5000' }, 'EXECD_SHUTDOWN_GRACE_MS'],
      [{ EXECD_SHUTDOWN_GRACE_MS: '20000' }, 'EXECD_SHUTDOWN_TIMEOUT_MS'],
    ] as const) {
      const { code, stderr } = await startExpectingRefusal({ ...env, EXECD_INSTANCE_DIR: tempInstanceDir() });
      expect(code).toBe(2);
      expect(stderr.trim().split('\n')).toHaveLength(1);
      expect(stderr).toMatch(new RegExp(`^execd: invalid setting ${name}: .*EXECD_KILL_GRACE_MS < EXECD_SHUTDOWN_GRACE_MS < EXECD_SHUTDOWN_TIMEOUT_MS`));
    }
  });
});

/** The pid of `parent`'s child, if it has one. */
function childOf(parent: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

const hasScript = spawnSync('sh', ['-c', 'command -v script']).status === 0;

describe('log format', () => {
  it.skipIf(!hasScript)('is pretty on a TTY (JSON lines otherwise, as every other test here reads them)', async () => {
    const env = `EXECD_PORT=0 EXECD_TOKEN=${SERVER_TOKEN} EXECD_MAX_EVENT_LOOP_DELAY_MS=0 EXECD_INSTANCE_DIR=${tempInstanceDir()}`;
    // script(1) gives the server a pseudo-terminal as stdout; `exec env` makes the server script's own child.
    const child = spawn('script', ['-qec', `exec env -u NO_COLOR ${env} ${process.execPath} --import tsx src/main.ts`, '/dev/null'], {
      cwd: new URL('../..', import.meta.url).pathname,
      stdio: ['ignore', 'pipe', 'ignore', 'ipc'], // script and env pass the IPC channel on: the server dies with this test
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      expect(await waitFor(() => out.includes('execd ready'), 20_000)).toBe(true);
      // pino-pretty's colours (ESC [ … m) off
      // eslint-disable-next-line no-control-regex
      const text = out.replace(/\x1b\[[0-9;]*m/g, '');
      expect(text).toMatch(/INFO.*execd listening on http:\/\/127\.0\.0\.1:\d+/);
      expect(text.split('\n').some((l) => l.trim().startsWith('{"level"'))).toBe(false);
    } finally {
      const server = childOf(child.pid!);
      if (server !== undefined) process.kill(server, 'SIGTERM');
      else child.kill('SIGKILL');
      await exited;
    }
  });
});
