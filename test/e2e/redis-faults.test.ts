import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { waitFor } from '../helpers/proc.js';
import { call, Cluster, connectTo, jobOf, linesOf, listAll, rawGet, requireRedis, runningJob, settleJob, startRedis, submitJob, type PrivateRedis } from '../helpers/redis.js';
import { liveMembers, type ServerProcess } from '../helpers/server.js';

/**
 * Faults of the Redis backend (issue 7) with real processes: a worker killed with -9 mid-job,
 * a worker that loses Redis, and Redis itself restarted mid-queue (a redis-server of the test's
 * own, with AOF, appendfsync always). A fresh key prefix per test, its keys deleted afterwards.
 */

requireRedis({ server: true });
const STALL_MS = 2000;
const work = mkdtempSync(join(tmpdir(), 'execd-redis-faults-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let cluster: Cluster | undefined;
let redis: PrivateRedis | undefined;
afterEach(async () => {
  await cluster?.stop();
  cluster = undefined;
  await redis?.close();
  redis = undefined;
}, 30_000);

/** A request that must be refused quickly while Redis is away: its status, code, Retry-After and how long it took. */
async function timed(node: ServerProcess, path: string, init: { method?: string; body?: unknown } = {}) {
  const t0 = Date.now();
  const r = await call<{ code?: string }>(node, path, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: r.status, code: r.body?.code, type: r.headers.get('content-type'), retryAfter: r.headers.get('retry-after'), ms: Date.now() - t0 };
}

const readyz = async (node: ServerProcess) => (await fetch(`${node.url}/readyz`, { signal: AbortSignal.timeout(10_000) })).status;

describe('a worker killed with -9 mid-job', () => {
  it('its job ends lost (WORKER_LOST) within the stall interval, its process group is gone, and it never runs again', async () => {
    cluster = new Cluster({ env: { EXECD_QUEUES: 'default:1', EXECD_REDIS_STALL_MS: String(STALL_MS) } });
    const [A, B, C1] = await cluster.startAll(['api', 'api', 'worker']);
    const file = join(work, 'lost.log');
    const job = await submitJob(A!, { command: `echo started >> '${file}'; sleep 300 & sleep 300` });
    const pgid = (await runningJob(A!, job.id)).pid!;
    cluster.track(pgid);
    expect(await waitFor(() => liveMembers(pgid).length >= 2)).toBe(true);
    const next = await submitJob(B!, { command: `echo next >> '${file}.next'` }); // queued behind it (one worker, concurrency 1)
    expect((await jobOf(A!, next.id)).state).toBe('queued');
    // viewers through both api nodes, there before the crash
    const follow = rawGet(A!, `/v1/jobs/${job.id}/output?follow=true`);
    const ws = await connectTo(B!, `/v1/jobs/${job.id}/stream`);
    await ws.next((f) => f.type === 'state');

    await C1!.crash();
    const t0 = Date.now();
    let lost: Job | undefined;
    await waitFor(async () => (lost = await jobOf(B!, job.id)).state !== 'running', STALL_MS + 4000, 50);
    const tookMs = Date.now() - t0;
    expect(lost).toMatchObject({ state: 'lost', error: { code: 'WORKER_LOST' } });
    expect(tookMs).toBeLessThanOrEqual(STALL_MS + 2000);
    expect(await waitFor(() => liveMembers(pgid).length === 0, 2000)).toBe(true);
    expect((await follow).trailers['x-job-state']).toBe('lost');
    const { frames, code } = await ws.all();
    expect(code).toBe(1000);
    expect(frames.at(-1)).toMatchObject({ type: 'exit', state: 'lost' });
    expect((await listAll(A!, 'state=lost')).map((j) => j.id)).toEqual([job.id]);
    expect((await jobOf(B!, next.id)).state).toBe('queued'); // nobody to run it yet

    // A new worker: it runs what is queued, never the lost job.
    await cluster.start('worker');
    expect((await settleJob(A!, next.id)).state).toBe('succeeded');
    await new Promise((r) => setTimeout(r, 2 * STALL_MS));
    expect(linesOf(file)).toEqual(['started']);
    expect(linesOf(`${file}.next`)).toEqual(['next']);
    expect((await jobOf(A!, job.id)).state).toBe('lost');
  }, 60_000);
});

describe('a worker that loses Redis', () => {
  it('kills its running process group before the stall interval; the API answers 503 at once and /readyz is 503; all resumes when Redis returns', async () => {
    redis = await startRedis({ aof: true });
    cluster = new Cluster({ redisUrl: redis.url, env: { EXECD_QUEUES: 'default:1', EXECD_REDIS_STALL_MS: String(STALL_MS) } });
    const [A, C] = await cluster.startAll(['api', 'worker']);
    const file = join(work, 'cut.log');
    const job = await submitJob(A!, { command: `echo started >> '${file}'; sleep 300 & sleep 300` });
    const pgid = (await runningJob(A!, job.id)).pid!;
    cluster.track(pgid);
    expect(await waitFor(() => liveMembers(pgid).length >= 2)).toBe(true);

    await redis.stop();
    const t0 = Date.now();
    // watched from the stop on, while the API is probed
    const groupGoneAfter = waitFor(() => liveMembers(pgid).length === 0, STALL_MS + 3000, 20)
      .then((gone) => (gone ? Date.now() - t0 : null));
    // the API: 503 BACKEND_UNAVAILABLE (problem+json, Retry-After) within about a second, whatever the route
    for (const [path, init] of [
      ['/v1/jobs', { body: { argv: ['true'] } }],
      [`/v1/jobs/${job.id}`, {}],
      ['/v1/jobs', {}],
    ] as const) {
      const r = await timed(A!, path, init);
      expect(r, path).toMatchObject({ status: 503, code: 'BACKEND_UNAVAILABLE', retryAfter: expect.stringMatching(/^\d+$/) });
      expect(r.type).toMatch(/^application\/problem\+json/);
      expect(r.ms, path).toBeLessThan(1500);
    }
    expect(await readyz(A!)).toBe(503);
    expect(await readyz(C!)).toBe(503);
    expect((await fetch(`${A!.url}/healthz`)).status).toBe(200); // alive all the same
    // the worker kills the group it runs rather than risk a duplicate: before its heartbeat could expire (STALL_MS)
    const goneMs = await groupGoneAfter;
    expect(goneMs).not.toBeNull();
    expect(goneMs!).toBeLessThan(STALL_MS);

    await redis.start();
    expect(await waitFor(async () => (await readyz(A!)) === 200 && (await readyz(C!)) === 200, 10_000, 100)).toBe(true);
    const ended = await settleJob(A!, job.id, 15_000);
    expect(ended.state).toBe('lost');
    const after = await submitJob(A!, { command: `echo after >> '${file}.after'` });
    expect((await settleJob(A!, after.id)).state).toBe('succeeded');
    await new Promise((r) => setTimeout(r, STALL_MS));
    expect(linesOf(file)).toEqual(['started']); // never run twice
    expect(linesOf(`${file}.after`)).toEqual(['after']);
  }, 60_000);
});

describe('Redis restarted mid-queue (AOF, appendfsync always)', () => {
  for (const [signal, how] of [
    ['SIGTERM', 'an orderly restart'],
    ['SIGKILL', 'a crash'],
  ] as const) {
    it(`no accepted job is lost (${signal}: ${how}): 30 jobs on a one-worker node all succeed, once each, in order; 503 during the outage, then recovery`, async () => {
      redis = await startRedis({ aof: true });
      // A stall interval well above the outage: this test is about the queue, not about stalls.
      cluster = new Cluster({ redisUrl: redis.url, env: { EXECD_QUEUES: 'default:1', EXECD_REDIS_STALL_MS: '15000' } });
      const [A] = await cluster.startAll(['api', 'worker']);
      const file = join(work, `restart-${signal}.log`);
      const ids: string[] = [];
      for (let i = 0; i < 30; i++) ids.push((await submitJob(A!, { command: `echo ${i} >> '${file}'; sleep 0.1` })).id);
      expect(await waitFor(() => linesOf(file).length >= 5, 15_000)).toBe(true);

      await redis.stop(signal);
      const refused = await timed(A!, '/v1/jobs', { body: { argv: ['true'] } });
      expect(refused).toMatchObject({ status: 503, code: 'BACKEND_UNAVAILABLE', retryAfter: expect.stringMatching(/^\d+$/) });
      expect(refused.ms).toBeLessThan(1500);
      expect(await readyz(A!)).toBe(503);
      expect(linesOf(file).length).toBeLessThan(30); // stopped mid-queue
      await redis.start();

      expect(await waitFor(async () => (await readyz(A!)) === 200, 10_000, 100)).toBe(true);
      const jobs: Job[] = [];
      for (const id of ids) jobs.push(await settleJob(A!, id, 30_000));
      expect(jobs.map((j) => j.state)).toEqual(ids.map(() => 'succeeded'));
      expect(linesOf(file)).toEqual(ids.map((_, i) => String(i))); // each once, in acceptance order
      expect((await listAll(A!, '', 7)).map((j) => j.id)).toEqual(ids); // none missing from the list
      const later = await submitJob(A!, { argv: ['true'] });
      expect((await settleJob(A!, later.id)).state).toBe('succeeded');
    }, 60_000);
  }

  // A 503 answers a submit whose outcome execd could not learn: Redis may have stored its confirmation in the
  // instant it died (the reply is what got lost). That is what Idempotency-Key is for: the client retries with
  // the same key and gets the job that was accepted, or a new one — every submission runs exactly once.
  it('submits racing a Redis crash: every 202 runs exactly once; a 503 retried with its Idempotency-Key runs exactly once too; none is left queued', async () => {
    redis = await startRedis({ aof: true });
    cluster = new Cluster({ redisUrl: redis.url, env: { EXECD_QUEUES: 'default:4', EXECD_REDIS_STALL_MS: '15000' } });
    const [A] = await cluster.startAll(['api', 'worker']);
    const file = join(work, 'race.log');
    const outcome = new Map<number, number | 'error'>(); // submission number → HTTP status (or a transport error)
    const accepted = new Map<number, string>();
    let next = 0;
    let stop = false;
    const submitter = async () => {
      while (!stop && next < 5000) {
        const i = next++;
        try {
          const r = await call<Job>(A!, '/v1/jobs', { body: { command: `echo ${i} >> '${file}'` }, headers: { 'idempotency-key': `race-${i}` }, signal: AbortSignal.timeout(10_000) });
          outcome.set(i, r.status);
          if (r.status === 202) accepted.set(i, r.body.id);
        } catch {
          outcome.set(i, 'error');
        }
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    const submitters = Array.from({ length: 4 }, submitter);
    // Redis dies once a few submits went through (however fast this machine is), with more in flight.
    expect(await waitFor(async () => accepted.size > 20, 15_000, 10)).toBe(true);
    await redis.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 1500));
    await redis.start();
    expect(await waitFor(async () => (await readyz(A!)) === 200, 10_000, 100)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(submitters);

    const statuses = [...outcome.values()];
    expect(statuses.filter((s) => s === 202).length).toBeGreaterThan(20);
    expect(statuses.filter((s) => s !== 202 && s !== 503)).toEqual([]); // refused with 503 BACKEND_UNAVAILABLE, never another error
    expect(statuses.filter((s) => s === 503).length).toBeGreaterThan(0);
    for (const id of accepted.values()) expect((await settleJob(A!, id, 10_000)).state).toBe('succeeded');
    // every job the cluster holds ends: none stays queued (or running) for ever
    await new Promise((r) => setTimeout(r, 1000));
    const stuck = (await listAll(A!, '', 1000)).filter((j) => j.state === 'queued' || j.state === 'running');
    expect(stuck.map((j) => ({ id: j.id, state: j.state, spec: j.spec.command }))).toEqual([]);
    // What ran before any retry: each at most once, and every 202 among them. A 503 that ran anyway is one whose
    // confirmation landed as Redis died: only a few submissions were in flight then.
    const before = linesOf(file).map(Number);
    expect(before.length).toBe(new Set(before).size);
    for (const i of accepted.keys()) expect(before).toContain(i);
    const refusedButRan = before.filter((i) => !accepted.has(i));
    expect(refusedButRan.length).toBeLessThanOrEqual(4);
    // The client's retries with the same keys: the job already accepted (200), or a new one (202); never two.
    const refused = [...outcome.keys()].filter((i) => !accepted.has(i));
    for (const i of refused) {
      const retry = () => call<Job>(A!, '/v1/jobs', { body: { command: `echo ${i} >> '${file}'` }, headers: { 'idempotency-key': `race-${i}` } });
      let r = await retry();
      // 503 + Retry-After while the first attempt's outcome is still being settled (at most its confirmation time)
      for (let n = 0; r.status === 503 && n < 15; n++) {
        expect(r.headers.get('retry-after')).toBe('1');
        await new Promise((done) => setTimeout(done, 1000));
        r = await retry();
      }
      expect([200, 202], JSON.stringify(r.body)).toContain(r.status);
      if (refusedButRan.includes(i)) expect(r.status).toBe(200); // it had been accepted: the same job
      expect((await settleJob(A!, r.body.id, 10_000)).state).toBe('succeeded');
    }
    const ran = linesOf(file).map(Number);
    expect(ran.length).toBe(new Set(ran).size); // none twice, retries included
    expect(ran.sort((a, b) => a - b)).toEqual([...outcome.keys()].sort((a, b) => a - b)); // every submission, once
  }, 120_000);
});
