import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Job, JobList, QueueInfo } from '../../src/schemas/jobs.js';
import { AUTH, type TestApp } from '../helpers/app.js';
import { settle, startJobsApp, submit, waitRunning } from '../helpers/jobs.js';

/**
 * The job routes answer with JSON.stringify rather than through the zod
 * serializer: this checks every kind of answer against its schema, strictly
 * (a parse strips unknown keys, so the parsed value must equal the answer).
 */
let t: TestApp;
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:2,solo:1' });
});
afterAll(() => t.close());

const conforms = (schema: z.ZodType, body: unknown) => {
  const parsed = schema.safeParse(body);
  expect(parsed.error).toBeUndefined();
  expect(parsed.data).toEqual(body);
};

describe('job answers match their schemas exactly', () => {
  it('in every state, from every route', async () => {
    const blocker = await submit(t, { argv: ['sleep', '30'], queue: 'solo', env: { A: 'b' }, stdin: { stream: true } });
    const queued = await t.http.post('/v1/jobs').set(AUTH).set('idempotency-key', 'c1').send({ command: 'true', queue: 'solo', stdin: 'x', encoding: 'base64' });
    const replay = await t.http.post('/v1/jobs').set(AUTH).set('idempotency-key', 'c1').send({ command: 'true', queue: 'solo', stdin: 'x', encoding: 'base64' });
    expect([queued.status, replay.status]).toEqual([202, 200]);
    const running = await waitRunning(t, blocker.id);
    const signaled = await t.http.post(`/v1/jobs/${blocker.id}/signal`).set(AUTH).send({ signal: 'SIGCONT' });
    const finished = await Promise.all([
      settle(t, (await submit(t, { argv: ['true'] })).id),
      settle(t, (await submit(t, { command: 'exit 2', stderr: 'merge' })).id),
      settle(t, (await submit(t, { argv: ['no-such-program-execd'] })).id),
      settle(t, (await submit(t, { argv: ['sleep', '5'], timeoutMs: 100, killGraceMs: 0, maxOutputBytes: 10 })).id),
    ]);
    const canceledQueued = await t.http.post(`/v1/jobs/${queued.body.id}/cancel`).set(AUTH);
    const canceledRunning = await t.http.post(`/v1/jobs/${blocker.id}/cancel`).set(AUTH);
    const long = await t.http.get(`/v1/jobs/${blocker.id}?waitMs=10`).set(AUTH);
    const bodies = [queued.body, replay.body, running, signaled.body, ...finished, canceledQueued.body, canceledRunning.body, long.body];
    for (const body of bodies) conforms(Job, body);
    expect(new Set([queued.body.state, running.state, ...finished.map((j) => j.state), canceledRunning.body.state])).toEqual(
      new Set(['queued', 'running', 'succeeded', 'failed', 'timed_out', 'canceled']),
    );
    conforms(JobList, (await t.http.get('/v1/jobs?limit=3').set(AUTH)).body);
    conforms(JobList, (await t.http.get('/v1/jobs').set(AUTH)).body);
    conforms(z.array(QueueInfo), (await t.http.get('/v1/queues').set(AUTH)).body);
  });
});
