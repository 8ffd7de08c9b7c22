import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH, type TestApp, ON_REDIS } from '../helpers/app.js';
import { membersOfGroup, waitFor } from '../helpers/proc.js';
import { getJob, rawGet, settle, startJobsApp, submit, waitRunning } from '../helpers/jobs.js';

let t: TestApp;
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:4,solo:1', EXECD_KILL_GRACE_MS: '300' });
});
afterAll(() => t.close());

const cancel = (id: string) => t.http.post(`/v1/jobs/${id}/cancel`).set(AUTH);
const TREE = 'sleep 300 & sleep 300 & wait';

describe('cancel', () => {
  it('a queued job is canceled at once and never starts', async () => {
    const blocker = await submit(t, { argv: ['sleep', '30'], queue: 'solo' });
    const queued = await submit(t, { argv: ['true'], queue: 'solo' });
    expect(queued).toMatchObject({ state: 'queued', position: expect.any(Number) });
    const res = await cancel(queued.id);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ state: 'canceled', startedAt: null, pid: null, result: null, position: null });
    expect(res.body.finishedAt).not.toBeNull();
    const q = (await t.http.get('/v1/queues').set(AUTH)).body.find((x: { name: string }) => x.name === 'solo');
    expect(q.queued).toBe(0);
    await cancel(blocker.id);
    expect((await getJob(t, queued.id)).state).toBe('canceled');
  });

  it('a running process tree is terminated as a group: no survivor', async () => {
    const job = await submit(t, { command: TREE });
    const { pid } = await waitRunning(t, job.id);
    expect(await waitFor(() => membersOfGroup(pid!).length >= 3)).toBe(true);
    const res = await cancel(job.id);
    expect(res.body).toMatchObject({ state: 'canceled', result: { signal: 'SIGTERM' } });
    expect(await waitFor(() => membersOfGroup(pid!).length === 0, 3000)).toBe(true);
  });

  it('a tree that ignores SIGTERM gets SIGKILL after the grace, then canceled', async () => {
    const job = await submit(t, { command: `trap "" TERM; ${TREE}`, killGraceMs: 200 });
    const { pid } = await waitRunning(t, job.id);
    expect(await waitFor(() => membersOfGroup(pid!).length >= 3)).toBe(true);
    const t0 = Date.now();
    const res = await cancel(job.id);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150);
    expect(res.body).toMatchObject({ state: 'canceled', result: { signal: 'SIGKILL' } });
    expect(await waitFor(() => membersOfGroup(pid!).length === 0, 3000)).toBe(true);
  });

  it('a finished job is answered as it is', async () => {
    const job = await settle(t, (await submit(t, { argv: ['true'] })).id);
    const res = await cancel(job.id);
    expect(res.status).toBe(200);
    expect(res.body.state).toBe('succeeded');
  });
});

describe('signal', () => {
  it('delivers the signal to a running job (202) and the job reacts', async () => {
    const job = await submit(t, { command: 'trap "exit 7" USR1; echo ready; while :; do sleep 0.05; done' });
    await waitFor(async () => (await getJob(t, job.id)).outputBytes.stdout > 0);
    const res = await t.http.post(`/v1/jobs/${job.id}/signal`).set(AUTH).send({ signal: 'SIGUSR1' });
    expect(res.status).toBe(202);
    expect(res.body.id).toBe(job.id);
    expect(await settle(t, job.id)).toMatchObject({ state: 'failed', result: { exitCode: 7 } });
  });

  it('SIGKILL ends a job as failed with the signal', async () => {
    const job = await submit(t, { argv: ['sleep', '30'] });
    await waitRunning(t, job.id);
    expect((await t.http.post(`/v1/jobs/${job.id}/signal`).set(AUTH).send({ signal: 'SIGKILL' })).status).toBe(202);
    expect(await settle(t, job.id)).toMatchObject({ state: 'failed', result: { signal: 'SIGKILL', exitCode: null, returncode: -9 } });
  });

  it('409 for a queued or finished job, 400 for a name that is not a signal', async () => {
    const blocker = await submit(t, { argv: ['sleep', '30'], queue: 'solo' });
    const queued = await submit(t, { argv: ['true'], queue: 'solo' });
    const sig = (id: string, signal: unknown) => t.http.post(`/v1/jobs/${id}/signal`).set(AUTH).send({ signal });
    expect((await sig(queued.id, 'SIGTERM')).status).toBe(409);
    await waitRunning(t, blocker.id);
    for (const bad of ['SIGNOPE', 'TERM', 'sigterm', '15', 15, '']) expect((await sig(blocker.id, bad)).status).toBe(400);
    await cancel(queued.id);
    expect((await sig(queued.id, 'SIGTERM')).body.code).toBe('CONFLICT');
    await cancel(blocker.id);
  });
});

describe('DELETE /v1/jobs/{id}', () => {
  it('409 while running; 204 once terminal, then the job and its output are gone', async () => {
    const job = await submit(t, { argv: ['sleep', '30'] });
    await waitRunning(t, job.id);
    const busy = await t.http.delete(`/v1/jobs/${job.id}`).set(AUTH);
    expect(busy.status).toBe(409);
    expect(busy.body.code).toBe('CONFLICT');
    await cancel(job.id);
    const res = await t.http.delete(`/v1/jobs/${job.id}`).set(AUTH);
    expect(res.status).toBe(204);
    expect(res.text).toBe('');
    expect((await t.http.get(`/v1/jobs/${job.id}`).set(AUTH)).status).toBe(404);
    expect((await t.http.get(`/v1/jobs/${job.id}/output`).set(AUTH)).status).toBe(404);
    expect((await t.http.delete(`/v1/jobs/${job.id}`).set(AUTH)).status).toBe(404);
  });
});

describe('shutdown', () => {
  it.skipIf(ON_REDIS)('close() cancels queued jobs and terminates running trees', async () => {
    const s = await startJobsApp({ EXECD_QUEUES: 'solo:1', EXECD_KILL_GRACE_MS: '300' });
    const running = await submit(s, { command: TREE, queue: 'solo' });
    const queued = await submit(s, { argv: ['true'], queue: 'solo' });
    const { pid } = await waitRunning(s, running.id);
    await waitFor(() => membersOfGroup(pid!).length >= 3);
    const finished: string[] = [];
    s.app.services.jobs.events.on('finished', (job) => finished.push(`${job.id}:${job.state}:${job.error?.code}`));
    // open requests do not hold the shutdown: a follow ends with its trailers, a long-poll answers
    const follow = rawGet(s, `/v1/jobs/${running.id}/output?follow=true`);
    const poll = getJob(s, running.id, 30_000);
    const connections = () => new Promise<number>((r) => s.app.server.getConnections((_, n) => r(n)));
    expect(await waitFor(async () => (await connections()) >= 2)).toBe(true);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await s.close();
    expect(Date.now() - t0).toBeLessThan(5000);
    expect((await follow).trailers['x-job-state']).toBe('canceled');
    expect((await poll).state).toBe('canceled');
    expect(await waitFor(() => membersOfGroup(pid!).length === 0, 3000)).toBe(true);
    expect(finished.sort()).toEqual([`${queued.id}:canceled:SHUTTING_DOWN`, `${running.id}:canceled:SHUTTING_DOWN`].sort());
    await expect(s.app.services.jobs.submit({ queue: 'solo', spec: { argv: ['true'] }, ownerId: 'env', grant: { rule: 'no-policy' } })).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
  });
});
