import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { ExitFrame, StateFrame } from '../../src/schemas/stream.js';
import { waitFor } from '../helpers/proc.js';
import {
  call,
  Cluster,
  connectTo,
  jobOf,
  keysOf,
  linesOf,
  listAll,
  parentOf,
  rawGet,
  requireRedis,
  runningJob,
  settleJob,
  submitJob,
  within,
  type Node,
} from '../helpers/redis.js';
import { liveMembers } from '../helpers/server.js';
import { reassemble, type Frame } from '../helpers/stream.js';
import { pattern } from '../helpers/jobs.js';

/**
 * The Redis backend (issue 7) with several execd processes sharing one Redis and key prefix:
 * every jobs and streaming behaviour, with the job accepted on one node, watched and controlled
 * through another, and run on a third. Real processes, the test Redis (127.0.0.1:6379 or EXECD_TEST_REDIS_URL), a fresh
 * prefix per cluster, its keys deleted afterwards.
 */

requireRedis();
const work = mkdtempSync(join(tmpdir(), 'execd-redis-cluster-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let gates = 0;
/** A shell snippet that blocks until `open()` is called. */
function gate(): { wait: string; open(): void } {
  const file = join(work, `gate-${++gates}`);
  return { wait: `while [ ! -e '${file}' ]; do sleep 0.02; done`, open: () => writeFileSync(file, '') };
}

const problem = (r: { status: number; headers: Headers; body: unknown }, status: number, code: string) => {
  expect(r.status, JSON.stringify(r.body)).toBe(status);
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect((r.body as { code: string }).code).toBe(code);
};

const types = (frames: Frame[]) => frames.map((f) => f.type).filter((type, i, all) => i === 0 || type !== all[i - 1]);

describe('three processes: api A, api B, worker C', () => {
  const cluster = new Cluster({ env: { EXECD_QUEUES: 'default:4,solo:1' } });
  let A: Node;
  let B: Node;
  let C: Node;
  beforeAll(async () => {
    [A, B, C] = await cluster.startAll(['api', 'api', 'worker']);
  }, 60_000);
  afterAll(() => cluster.stop(), 30_000);

  describe('roles', () => {
    it('the worker serves /healthz, /readyz and /metrics, and answers 404 on every /v1 route', async () => {
      expect((await fetch(`${C.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${C.url}/readyz`)).status).toBe(200);
      const metrics = await call(C, '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
      for (const [method, path] of [
        ['GET', '/v1/jobs'],
        ['POST', '/v1/jobs'],
        ['GET', '/v1/jobs/x'],
        ['GET', '/v1/queues'],
        ['GET', '/v1/info'],
        ['POST', '/v1/run'],
        ['GET', '/v1/events'],
      ] as const) {
        const r = await call(C, path, { method, ...(method === 'POST' ? { body: { argv: ['true'] } } : {}) });
        expect(r.status, `${method} ${path}`).toBe(404);
      }
      for (const api of [A, B]) {
        expect((await fetch(`${api.url}/healthz`)).status).toBe(200);
        expect((await fetch(`${api.url}/readyz`)).status).toBe(200);
      }
    });

    it('a job accepted by api A runs on worker C (its parent), never on an api node; B answers it', async () => {
      const g = gate();
      const r = await call<Job>(A, '/v1/jobs', { body: { command: `echo $PPID; ${g.wait}` } });
      expect(r.status).toBe(202);
      expect(r.headers.get('location')).toBe(`/v1/jobs/${r.body.id}`);
      expect(r.body.state).toBe('queued');
      const running = await runningJob(B, r.body.id);
      cluster.track(running.pid!);
      expect(parentOf(running.pid!)).toBe(C.pid);
      g.open();
      const done = await settleJob(B, r.body.id);
      expect(done).toMatchObject({ id: r.body.id, state: 'succeeded', result: { exitCode: 0 } });
      const out = await rawGet(B, `/v1/jobs/${r.body.id}/output`);
      expect(out.body.toString()).toBe(`${C.pid}\n`);
    });

    it('jobs submitted alternately through A and B all run on C and finish, each seen alike through both', async () => {
      const jobs = await Promise.all(Array.from({ length: 8 }, (_, i) => submitJob(i % 2 ? B : A, { command: `echo job ${i}; echo $PPID` })));
      for (const [i, job] of jobs.entries()) {
        const done = await settleJob(i % 2 ? A : B, job.id);
        expect(done.state).toBe('succeeded');
        expect((await rawGet(i % 2 ? B : A, `/v1/jobs/${job.id}/output`)).body.toString()).toBe(`job ${i}\n${C.pid}\n`);
        expect(await jobOf(i % 2 ? B : A, job.id)).toEqual(done);
      }
    });

    it('every key the cluster wrote starts with "<prefix>:"', async () => {
      const { keys, strays } = await keysOf(cluster.prefix);
      expect(keys.length).toBeGreaterThan(0);
      expect(strays).toEqual([]);
    });
  });

  describe('list and long-poll through another node', () => {
    it('a cursor walks every job once, in acceptance order, through either api node; state and queue filters hold', async () => {
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) ids.push((await submitJob(i % 2 ? B : A, { argv: ['true'] })).id);
      for (const id of ids) expect((await settleJob(A, id)).state).toBe('succeeded');
      for (const node of [A, B]) {
        const all = await listAll(node, '', 3);
        const listed = all.map((j) => j.id);
        expect(new Set(listed).size).toBe(listed.length); // no job twice across pages
        expect(listed.filter((id) => ids.includes(id))).toEqual(ids);
        const succeeded = (await listAll(node, 'state=succeeded', 4)).map((j) => j.id);
        expect(succeeded.filter((id) => ids.includes(id))).toEqual(ids);
        expect((await listAll(node, 'state=running')).filter((j) => ids.includes(j.id))).toEqual([]);
        expect((await listAll(node, 'queue=solo')).filter((j) => ids.includes(j.id))).toEqual([]);
        expect((await listAll(node, 'queue=default', 5)).map((j) => j.id).filter((id) => ids.includes(id))).toEqual(ids);
      }
    });

    it('a long-poll through B answers as soon as the job on C ends, and the job as it is when waitMs pass', async () => {
      const g = gate();
      const job = await submitJob(A, { command: g.wait });
      await runningJob(A, job.id);
      let t0 = Date.now();
      const still = await jobOf(B, job.id, 400);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(390);
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(still.state).toBe('running');
      t0 = Date.now();
      const poll = jobOf(B, job.id, 20_000);
      await new Promise((r) => setTimeout(r, 300));
      g.open();
      const done = await poll;
      expect(done.state).toBe('succeeded');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
      expect(Date.now() - t0).toBeLessThan(3000);
    });
  });

  describe('output through another node', () => {
    it('HTTP follow through B and WebSocket through A: the same bytes at the same offsets as /output, replay then live, exit status at the end', async () => {
      const g = gate();
      const half = 300_000;
      const job = await submitJob(A, {
        command: `yes 0123456789abcdef | head -c ${half}; ${g.wait}; yes 0123456789abcdef | head -c ${half}; printf oops >&2; exit 3`,
      });
      const whole = Buffer.concat([pattern(half), pattern(half)]);
      expect(await waitFor(async () => (await jobOf(B, job.id)).outputBytes.stdout === half, 15_000)).toBe(true);
      expect((await jobOf(B, job.id)).state).toBe('running');

      // B: a follow from 0 gets the first half while the job waits at its gate (replay)
      let received = 0;
      const follow = rawGet(B, `/v1/jobs/${job.id}/output?follow=true`, (_, soFar) => (received = soFar.length));
      // A: a viewer from 0, and one that resumes stdout at 150000
      const ws = await connectTo(A, `/v1/jobs/${job.id}/stream`);
      const resumed = await connectTo(A, `/v1/jobs/${job.id}/stream?stdoutOffset=150000`);
      expect(await waitFor(() => received === half && reassemble(ws.frames, 'stdout').end === half, 15_000)).toBe(true);
      expect((await jobOf(A, job.id)).state).toBe('running');
      g.open(); // the second half: live, to viewers that were there before it was written

      const res = await follow;
      expect(res.status).toBe(200);
      expect(res.headers['x-output-offset']).toBe('0');
      expect(res.body.equals(whole)).toBe(true);
      expect(res.trailers).toMatchObject({ 'x-job-state': 'failed', 'x-exit-code': '3', 'x-signal': '', 'x-returncode': '3', 'x-output-end': String(2 * half) });

      const { frames, code } = await ws.all();
      expect(code).toBe(1000);
      expect(StateFrame.parse(frames[0])).toMatchObject({ state: 'running', pid: expect.any(Number) });
      expect(types(frames).slice(-2)).toEqual(['state', 'exit']);
      expect(ExitFrame.parse(frames.at(-1))).toEqual({ type: 'exit', state: 'failed', exitCode: 3, signal: null, returncode: 3, timedOut: false, truncated: { stdout: false, stderr: false }, truncatedReason: { stdout: null, stderr: null } });
      const stdout = reassemble(frames, 'stdout');
      expect(stdout.gaps).toEqual([]);
      expect(stdout.bytes.equals(whole)).toBe(true);
      expect(frames.some((f) => f.type === 'output' && f.offset === half)).toBe(true);
      expect(reassemble(frames, 'stderr').bytes.toString()).toBe('oops');

      const late = await resumed.all();
      expect(late.code).toBe(1000);
      const part = reassemble(late.frames, 'stdout', 150_000);
      expect(part.start).toBe(150_000);
      expect(part.bytes.equals(whole.subarray(150_000))).toBe(true);

      // plain reads at an offset, through either node
      const tail = await rawGet(A, `/v1/jobs/${job.id}/output?offset=${half - 10}`);
      expect(tail.headers['x-output-offset']).toBe(String(half - 10));
      expect(tail.body.equals(whole.subarray(half - 10))).toBe(true);
      expect((await rawGet(B, `/v1/jobs/${job.id}/output?stream=stderr&offset=1`)).body.toString()).toBe('ops');
      // a late follow from the end: nothing more, the status in trailers
      const after = await rawGet(B, `/v1/jobs/${job.id}/output?offset=${2 * half}&follow=true`);
      expect(after.body.length).toBe(0);
      expect(after.trailers).toMatchObject({ 'x-job-state': 'failed', 'x-output-end': String(2 * half) });
      // a late WebSocket viewer through B: everything, then the final state and exit
      const lateWs = await connectTo(B, `/v1/jobs/${job.id}/stream?offset=0`);
      const lateAll = await lateWs.all();
      expect(reassemble(lateAll.frames, 'stdout').bytes.equals(whole)).toBe(true);
      expect(lateAll.frames.filter((f) => f.type === 'state')).toEqual([expect.objectContaining({ state: 'failed' })]);
      expect(lateAll.frames.at(-1)).toMatchObject({ type: 'exit', state: 'failed', exitCode: 3 });
    }, 60_000);

    it("a job's maxOutputBytes caps what is kept, whichever node reads it", async () => {
      const job = await submitJob(A, { command: 'yes 0123456789abcdef | head -c 5000', maxOutputBytes: 1000 });
      const done = await settleJob(B, job.id);
      expect(done.state).toBe('succeeded');
      expect(done.outputBytes.stdout).toBe(1000);
      expect(done.result!.truncated).toEqual({ stdout: true, stderr: false });
      expect((await rawGet(B, `/v1/jobs/${job.id}/output`)).body.equals(pattern(1000))).toBe(true);
      expect((await rawGet(A, `/v1/jobs/${job.id}/output?offset=990`)).body.equals(pattern(1000).subarray(990))).toBe(true);
    });

    it('stdin of a job on C streamed from a WebSocket viewer on B, written as soon as the state frame says running', async () => {
      // Many rounds: a viewer that connects while its job is being started may get the "running"
      // frame (from the started event) before it has finished setting itself up; stdin must work then too.
      for (let k = 0; k < 120; k++) {
        const job = await submitJob(k % 2 ? A : B, { command: 'cat; echo done', stdin: { stream: true } });
        const ws = await connectTo(B, `/v1/jobs/${job.id}/stream`);
        await within(ws.next((f) => f.type === 'state' && f.state === 'running'), 10_000, 'running state frame', () => ws.frames);
        ws.send({ type: 'stdin', data: `hello ${k}\n` });
        ws.send({ type: 'stdin', eof: true });
        const { frames, code } = await within(ws.all(), 5000, `round ${k}: the job to end after stdin eof`, () => ws.frames).catch(async (err: Error) => {
          await call(A, `/v1/jobs/${job.id}/cancel`, { method: 'POST' });
          throw err;
        });
        expect(code).toBe(1000);
        expect(frames.filter((f) => f.type === 'error')).toEqual([]);
        expect(reassemble(frames, 'stdout').bytes.toString()).toBe(`hello ${k}\ndone\n`);
        expect(frames.at(-1)).toMatchObject({ type: 'exit', state: 'succeeded', exitCode: 0 });
      }
    }, 45_000);
  });

  describe('control through another node', () => {
    it('cancel through B of a job running on C: SIGTERM to the group, canceled, no survivor; A\'s follow and viewer end with it', async () => {
      const job = await submitJob(A, { command: 'sleep 300 & sleep 300' });
      const running = await runningJob(A, job.id);
      const pgid = running.pid!;
      cluster.track(pgid);
      expect(await waitFor(() => liveMembers(pgid).length >= 2)).toBe(true); // the grandchild is there
      expect((await listAll(B, 'state=running')).map((j) => j.id)).toContain(job.id);
      const follow = rawGet(A, `/v1/jobs/${job.id}/output?follow=true`);
      const ws = await connectTo(A, `/v1/jobs/${job.id}/stream`);
      await ws.next((f) => f.type === 'state');

      const t0 = Date.now();
      const r = await call<Job>(B, `/v1/jobs/${job.id}/cancel`, { method: 'POST' });
      expect(r.status).toBe(200);
      expect(r.body.state).toBe('canceled');
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(await waitFor(() => liveMembers(pgid).length === 0, 2000)).toBe(true);
      const seen = await jobOf(A, job.id);
      expect(seen).toMatchObject({ state: 'canceled', result: { signal: 'SIGTERM', exitCode: null } });
      expect((await follow).trailers['x-job-state']).toBe('canceled');
      const { frames, code } = await ws.all();
      expect(code).toBe(1000);
      expect(frames.at(-1)).toMatchObject({ type: 'exit', state: 'canceled', signal: 'SIGTERM' });
    });

    it('cancel through B of a job that ignores SIGTERM: SIGKILL after the grace, no survivor', async () => {
      const job = await submitJob(A, { command: "trap '' TERM; sleep 300 & sleep 300", killGraceMs: 500 });
      const pgid = (await runningJob(B, job.id)).pid!;
      cluster.track(pgid);
      expect(await waitFor(() => liveMembers(pgid).length >= 2)).toBe(true);
      const t0 = Date.now();
      const r = await call<Job>(B, `/v1/jobs/${job.id}/cancel`, { method: 'POST' });
      expect(r.status).toBe(200);
      expect(r.body.state).toBe('canceled');
      expect(Date.now() - t0).toBeGreaterThanOrEqual(450);
      expect(Date.now() - t0).toBeLessThan(4000);
      expect(await waitFor(() => liveMembers(pgid).length === 0, 2000)).toBe(true);
      expect((await jobOf(A, job.id)).result).toMatchObject({ signal: 'SIGKILL' });
    });

    it('a queued job: signal is 409, cancel through B ends it at once, and it never runs', async () => {
      const g = gate();
      const blocker = await submitJob(A, { queue: 'solo', command: g.wait });
      await runningJob(A, blocker.id);
      const marker = join(work, `never-${gates}`);
      const queued = await submitJob(A, { queue: 'solo', command: `echo ran > '${marker}'` });
      expect((await jobOf(B, queued.id)).state).toBe('queued');
      problem(await call(B, `/v1/jobs/${queued.id}/signal`, { body: { signal: 'SIGTERM' } }), 409, 'CONFLICT');
      const t0 = Date.now();
      const r = await call<Job>(B, `/v1/jobs/${queued.id}/cancel`, { method: 'POST' });
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ state: 'canceled', result: null, pid: null });
      expect(Date.now() - t0).toBeLessThan(1500);
      expect((await jobOf(A, queued.id)).state).toBe('canceled');
      expect((await call<Job>(A, `/v1/jobs/${queued.id}/cancel`, { method: 'POST' })).body.state).toBe('canceled'); // terminal: unchanged
      g.open();
      expect((await settleJob(B, blocker.id)).state).toBe('succeeded');
      const next = await submitJob(B, { queue: 'solo', argv: ['true'] }); // the queue goes on after it
      expect((await settleJob(A, next.id)).state).toBe('succeeded');
      expect(existsSync(marker)).toBe(false);
    });

    it('signal through B (202) reaches the group on C; through a WebSocket viewer on A too; 409 once terminal', async () => {
      const job = await submitJob(A, { command: "trap 'echo got USR1; exit 7' USR1; echo ready; while :; do sleep 0.05; done" });
      expect(await waitFor(async () => (await jobOf(B, job.id)).outputBytes.stdout >= 6, 10_000)).toBe(true);
      cluster.track((await jobOf(B, job.id)).pid!);
      const r = await call(B, `/v1/jobs/${job.id}/signal`, { body: { signal: 'SIGUSR1' } });
      expect(r.status).toBe(202);
      const done = await settleJob(A, job.id);
      expect(done).toMatchObject({ state: 'failed', result: { exitCode: 7 } });
      expect((await rawGet(A, `/v1/jobs/${job.id}/output`)).body.toString()).toBe('ready\ngot USR1\n');
      problem(await call(B, `/v1/jobs/${job.id}/signal`, { body: { signal: 'SIGUSR1' } }), 409, 'CONFLICT');

      const viaWs = await submitJob(B, { command: "trap 'echo got INT; exit 8' INT; echo ready; while :; do sleep 0.05; done" });
      const ws = await connectTo(A, `/v1/jobs/${viaWs.id}/stream`);
      await ws.next((f) => f.type === 'output' && String(f.data).includes('ready'));
      cluster.track((await jobOf(A, viaWs.id)).pid!);
      ws.send({ type: 'signal', signal: 'SIGINT' });
      const { frames } = await ws.all();
      expect(frames.filter((f) => f.type === 'error')).toEqual([]);
      expect(reassemble(frames, 'stdout').bytes.toString()).toBe('ready\ngot INT\n');
      expect(frames.at(-1)).toMatchObject({ type: 'exit', state: 'failed', exitCode: 8 });
    });

    it('late cancels and signals of a finished job never reach the next job on the same worker slot', async () => {
      const g = gate();
      const hits = join(work, `fence-${gates}`);
      const first = await submitJob(A, { queue: 'solo', command: 'sleep 0.3' });
      const second = await submitJob(A, { queue: 'solo', command: `trap 'echo USR1 >> ${hits}' USR1; trap 'echo TERM >> ${hits}' TERM; ${g.wait}` });
      await runningJob(A, first.id);
      // hammer the first job through B until the second one has run a while
      let stop = false;
      const hammer = (async () => {
        for (let i = 0; i < 400 && !stop; i++) {
          await call(B, `/v1/jobs/${first.id}/${i % 2 ? 'signal' : 'cancel'}`, { method: 'POST', ...(i % 2 ? { body: { signal: 'SIGUSR1' } } : {}) });
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      const running = await runningJob(B, second.id);
      cluster.track(running.pid!);
      await new Promise((r) => setTimeout(r, 500));
      stop = true;
      await hammer;
      expect((await jobOf(A, second.id)).state).toBe('running');
      g.open();
      expect((await settleJob(A, second.id)).state).toBe('succeeded');
      expect(linesOf(hits)).toEqual([]);
      expect(['canceled', 'failed', 'succeeded']).toContain((await jobOf(B, first.id)).state);
    });

    it('timeouts, spawn failures, env and stdin behave as on one node, seen through the other', async () => {
      const slow = await submitJob(A, { argv: ['sleep', '30'], timeoutMs: 300, killGraceMs: 200 });
      const missing = await submitJob(A, { argv: ['/nonexistent/execd-test'] });
      const secret = await submitJob(B, { command: 'echo "$SECRET"; cat', env: { SECRET: 'hunter2' }, stdin: 'from stdin' });
      expect(await settleJob(B, slow.id)).toMatchObject({ state: 'timed_out', result: { timedOut: true, signal: 'SIGTERM' } });
      expect(await settleJob(B, missing.id)).toMatchObject({ state: 'failed', error: { code: 'SPAWN_FAILED' } });
      const s = await settleJob(A, secret.id);
      expect(s.state).toBe('succeeded');
      expect(JSON.stringify(s.spec)).not.toContain('hunter2');
      expect(JSON.stringify(s.spec)).not.toContain('from stdin');
      expect((await rawGet(A, `/v1/jobs/${secret.id}/output`)).body.toString()).toBe('hunter2\nfrom stdin');
    });

    it('delete through B: 409 while running, 204 once terminal, then gone through A (job, output, list)', async () => {
      const g = gate();
      const job = await submitJob(A, { command: `echo bye; ${g.wait}` });
      await runningJob(A, job.id);
      problem(await call(B, `/v1/jobs/${job.id}`, { method: 'DELETE' }), 409, 'CONFLICT');
      g.open();
      expect((await settleJob(A, job.id)).state).toBe('succeeded');
      expect((await call(B, `/v1/jobs/${job.id}`, { method: 'DELETE' })).status).toBe(204);
      problem(await call(A, `/v1/jobs/${job.id}`), 404, 'NOT_FOUND');
      problem(await call(A, `/v1/jobs/${job.id}/output`), 404, 'NOT_FOUND');
      expect((await listAll(A)).map((j) => j.id)).not.toContain(job.id);
      problem(await call(B, `/v1/jobs/${job.id}`, { method: 'DELETE' }), 404, 'NOT_FOUND');
    });
  });

  describe('events, idempotency, FIFO across nodes', () => {
    it("/v1/events on B sees A's job: queued, started, finished", async () => {
      const events = await connectTo(B, '/v1/events');
      const job = await submitJob(A, { command: 'echo hi' });
      const finished = await Promise.race([
        events.next((f) => f.type === 'finished' && (f.job as Job).id === job.id),
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no finished event; frames: ${JSON.stringify(events.frames)}`)), 15_000)),
      ]);
      expect(finished.job).toMatchObject({ id: job.id, state: 'succeeded', result: { exitCode: 0 } });
      const mine = events.frames.filter((f) => (f.job as Job | undefined)?.id === job.id);
      expect(mine.map((f) => f.type)).toEqual(['queued', 'started', 'finished']);
      expect(mine[1]!.job).toMatchObject({ state: 'running', pid: expect.any(Number) });
      events.ws.close();
    });

    it('an Idempotency-Key holds across nodes: same body → the same job (200), another body → 409, even when both nodes race', async () => {
      const key = `k-${cluster.prefix}`;
      const body = { argv: ['echo', 'once'] };
      const first = await call<Job>(A, '/v1/jobs', { body, headers: { 'idempotency-key': key } });
      expect(first.status).toBe(202);
      const again = await call<Job>(B, '/v1/jobs', { body, headers: { 'idempotency-key': key } });
      expect(again.status).toBe(200);
      expect(again.body.id).toBe(first.body.id);
      problem(await call(B, '/v1/jobs', { body: { argv: ['echo', 'other'] }, headers: { 'idempotency-key': key } }), 409, 'CONFLICT');
      expect((await call<Job>(A, '/v1/jobs', { body, headers: { 'idempotency-key': key } })).body.id).toBe(first.body.id);

      const raced: string[] = [];
      for (let i = 0; i < 8; i++) {
        const headers = { 'idempotency-key': `${key}-race-${i}` };
        const [a, b] = await Promise.all([call<Job>(A, '/v1/jobs', { body, headers }), call<Job>(B, '/v1/jobs', { body, headers })]);
        expect([a.status, b.status].sort()).toEqual([200, 202]);
        expect(a.body.id).toBe(b.body.id);
        raced.push(a.body.id);
      }
      for (const id of [first.body.id, ...raced]) expect((await settleJob(A, id)).state).toBe('succeeded');
      const listed = (await listAll(B)).filter((j) => j.spec.argv?.[1] === 'once').map((j) => j.id);
      expect(listed.sort()).toEqual([first.body.id, ...raced].sort()); // one job per key, no more
    });

    it('FIFO with one worker: jobs accepted alternately by A and B start in acceptance order; positions and queue counts agree on both', async () => {
      const g = gate();
      const blocker = await submitJob(A, { queue: 'solo', command: g.wait });
      await runningJob(A, blocker.id);
      const file = join(work, 'fifo.log');
      const ids: string[] = [];
      for (let i = 0; i < 20; i++) ids.push((await submitJob(i % 2 ? B : A, { queue: 'solo', command: `echo ${i} >> '${file}'` })).id);
      for (const [k, id] of ids.entries()) expect((await jobOf(k % 2 ? A : B, id)).position).toBe(k);
      for (const node of [A, B]) {
        const solo = (await call<{ name: string; running: number; queued: number }[]>(node, '/v1/queues')).body.find((q) => q.name === 'solo');
        expect(solo).toMatchObject({ running: 1, queued: 20 });
      }
      g.open();
      const jobs: Job[] = [];
      for (const [k, id] of ids.entries()) jobs.push(await settleJob(k % 2 ? A : B, id));
      expect(jobs.every((j) => j.state === 'succeeded')).toBe(true);
      expect(linesOf(file).map(Number)).toEqual([...Array(20).keys()]);
      for (let i = 1; i < jobs.length; i++) {
        expect(Date.parse(jobs[i]!.result!.startedAt)).toBeGreaterThanOrEqual(Date.parse(jobs[i - 1]!.result!.finishedAt));
      }
      expect((await settleJob(B, blocker.id)).state).toBe('succeeded');
    }, 60_000);
  });
});

describe('two processes: all X and worker Y', () => {
  const cluster = new Cluster({ env: { EXECD_QUEUES: 'default:1' } });
  let X: Node;
  let Y: Node;
  beforeAll(async () => {
    [X, Y] = await cluster.startAll(['all', 'worker']);
  }, 60_000);
  afterAll(() => cluster.stop(), 30_000);

  it('both run jobs of the shared queue at once, one each (concurrency 1 per node); X serves the API for both', async () => {
    const g = gate();
    const jobs = [await submitJob(X, { command: g.wait }), await submitJob(X, { command: g.wait })];
    const running = await Promise.all(jobs.map((j) => runningJob(X, j.id)));
    for (const r of running) cluster.track(r.pid!);
    expect(running.map((r) => parentOf(r.pid!)).sort()).toEqual([X.pid, Y.pid].sort());
    const third = await submitJob(X, { argv: ['true'] });
    expect((await jobOf(X, third.id)).state).toBe('queued'); // both nodes are full
    g.open();
    for (const j of [...jobs, third]) expect((await settleJob(X, j.id)).state).toBe('succeeded');
  });
});

describe('QUEUE_FULL across api nodes (capacity 3, no worker)', () => {
  const cluster = new Cluster({ env: { EXECD_QUEUES: 'default:1', EXECD_QUEUE_CAPACITY: '3' } });
  let A: Node;
  let B: Node;
  beforeAll(async () => {
    [A, B] = await cluster.startAll(['api', 'api']);
  }, 60_000);
  afterAll(() => cluster.stop(), 30_000);

  it('the fourth queued job is refused through either node with 503 QUEUE_FULL and Retry-After; a cancel makes room', async () => {
    const jobs = [await submitJob(A, { argv: ['true'] }), await submitJob(B, { argv: ['true'] }), await submitJob(A, { argv: ['true'] })];
    expect(await Promise.all(jobs.map(async (j) => (await jobOf(B, j.id)).position))).toEqual([0, 1, 2]);
    for (const node of [A, B]) {
      const full = await call(node, '/v1/jobs', { body: { argv: ['true'] } });
      problem(full, 503, 'QUEUE_FULL');
      expect(full.headers.get('retry-after')).toMatch(/^\d+$/);
      const q = (await call<{ name: string; queued: number; capacity: number }[]>(node, '/v1/queues')).body.find((x) => x.name === 'default');
      expect(q).toMatchObject({ queued: 3, capacity: 3 });
    }
    expect((await call<Job>(B, `/v1/jobs/${jobs[1]!.id}/cancel`, { method: 'POST' })).body.state).toBe('canceled');
    expect((await jobOf(A, jobs[2]!.id)).position).toBe(1);
    expect((await call(B, '/v1/jobs', { body: { argv: ['true'] } })).status).toBe(202);
    problem(await call(A, '/v1/jobs', { body: { argv: ['true'] } }), 503, 'QUEUE_FULL');
  });
});

describe("a worker's graceful shutdown (SIGTERM) in a cluster", () => {
  const cluster = new Cluster({ env: { EXECD_QUEUES: 'default:1', EXECD_SHUTDOWN_GRACE_MS: '1500', EXECD_KILL_GRACE_MS: '500' } });
  afterAll(() => cluster.stop(), 30_000);

  it('its running job ends canceled (SHUTTING_DOWN) with no survivor; the queued ones stay for another worker, which runs them', async () => {
    const [A, W1] = await cluster.startAll(['api', 'worker']);
    const g = gate();
    const job = await submitJob(A!, { command: `sleep 300 & ${g.wait}` });
    const pgid = (await runningJob(A!, job.id)).pid!;
    cluster.track(pgid);
    const marker = join(work, `after-shutdown-${gates}`);
    const queued = await submitJob(A!, { command: `echo ran >> '${marker}'` });
    const t0 = Date.now();
    W1!.child.kill('SIGTERM');
    expect(await W1!.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - t0).toBeLessThan(1500 + 2500);
    expect(liveMembers(pgid)).toEqual([]);
    expect(await settleJob(A!, job.id, 5000)).toMatchObject({ state: 'canceled', error: { code: 'SHUTTING_DOWN' } });
    expect((await jobOf(A!, queued.id)).state).toBe('queued'); // left in the shared queue
    await cluster.start('worker');
    expect((await settleJob(A!, queued.id)).state).toBe('succeeded');
    expect(linesOf(marker)).toEqual(['ran']);
  }, 45_000);
});
