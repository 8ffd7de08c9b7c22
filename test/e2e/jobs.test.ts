import type { Response } from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH, type TestApp, ON_REDIS } from '../helpers/app.js';
import { settle, startJobsApp, submit, waitRunning as waitRunningOn } from '../helpers/jobs.js';

const waitRunning = (id: string) => waitRunningOn(t, id);

let t: TestApp;
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:4,other:2', EXECD_MAX_OUTPUT_BYTES: '1048576' });
});
afterAll(() => t.close());

describe('POST /v1/jobs', () => {
  it('answers 202 with the Job and its Location; spec never echoes env values or stdin', async () => {
    const res = await t.http
      .post('/v1/jobs')
      .set(AUTH)
      .send({ argv: ['cat'], env: { API_KEY: 'hunter2', MODE: 'x' }, stdin: 'secret input', timeoutMs: 5000 });
    expect(res.status).toBe(202);
    expect(res.headers.location).toBe(`/v1/jobs/${res.body.id}`);
    expect(res.body).toMatchObject({
      state: 'queued',
      queue: 'default',
      spec: { argv: ['cat'], env: { API_KEY: '[redacted]', MODE: '[redacted]' }, stdin: '[redacted]', timeoutMs: 5000 },
      pid: null,
      result: null,
      error: null,
      outputBytes: { stdout: 0, stderr: 0 },
    });
    expect(JSON.stringify(res.body)).not.toMatch(/hunter2|secret input/);
    const done = await settle(t, res.body.id);
    expect(done.state).toBe('succeeded');
    expect(done.outputBytes.stdout).toBe('secret input'.length);
    expect(JSON.stringify(done)).not.toMatch(/hunter2|secret input/);
    expect(Object.keys(done).sort()).toEqual(
      ['id', 'state', 'queue', 'position', 'createdAt', 'startedAt', 'finishedAt', 'spec', 'pid', 'result', 'outputBytes', 'error', 'notify',
        'attempt', 'attempts', 'maxAttempts', 'runAt', 'labels', 'node'].sort(),
    );
  });

  it('runs on the named queue', async () => {
    const job = await submit(t, { argv: ['true'], queue: 'other' });
    expect(job.queue).toBe('other');
    expect((await settle(t, job.id)).state).toBe('succeeded');
  });

  it('needs a token', async () => {
    expect((await t.http.post('/v1/jobs').send({ argv: ['true'] })).status).toBe(401);
    expect((await t.http.get('/v1/queues')).status).toBe(401);
  });
});

describe('terminal states', () => {
  it('succeeded: exit 0, with the result and times stamped', async () => {
    const job = await settle(t, (await submit(t, { command: 'echo out; echo err >&2' })).id);
    expect(job).toMatchObject({ state: 'succeeded', position: null, outputBytes: { stdout: 4, stderr: 4 }, error: null });
    expect(job.result).toMatchObject({
      exitCode: 0, signal: null, returncode: 0, timedOut: false, truncated: { stdout: false, stderr: false },
    });
    expect(job.result!.pid).toBe(job.pid);
    expect(Date.parse(job.createdAt)).toBeLessThanOrEqual(Date.parse(job.startedAt!));
    expect(Date.parse(job.startedAt!)).toBeLessThanOrEqual(Date.parse(job.finishedAt!));
    expect(job.result).not.toHaveProperty('stdout');
  });

  it('failed: a non-zero exit', async () => {
    const job = await settle(t, (await submit(t, { command: 'exit 3' })).id);
    expect(job).toMatchObject({ state: 'failed', result: { exitCode: 3, returncode: 3 }, error: null });
  });

  it('failed: a process that cannot start, with SPAWN_FAILED and its errno', async () => {
    const job = await settle(t, (await submit(t, { argv: ['no-such-program-execd'] })).id);
    expect(job).toMatchObject({ state: 'failed', result: null, pid: null, error: { code: 'SPAWN_FAILED', errno: 'ENOENT' } });
  });

  it('timed_out: timeoutMs expired', async () => {
    const job = await settle(t, (await submit(t, { argv: ['sleep', '30'], timeoutMs: 150 })).id);
    expect(job).toMatchObject({ state: 'timed_out', result: { timedOut: true, signal: 'SIGTERM', exitCode: null, returncode: -15 } });
  });

  it('canceled: a running job', async () => {
    const job = await submit(t, { argv: ['sleep', '30'] });
    await waitRunning(job.id);
    const res = await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ state: 'canceled', result: { signal: 'SIGTERM' } });
  });

  it('output past maxOutputBytes is dropped and truncated set; the process runs to its end', async () => {
    const job = await settle(t, (await submit(t, { command: 'head -c 5000 /dev/zero; echo done >&2', maxOutputBytes: 1000 })).id);
    expect(job).toMatchObject({ state: 'succeeded', outputBytes: { stdout: 1000, stderr: 5 }, result: { truncated: { stdout: true, stderr: false } } });
  });
});

describe('GET /v1/jobs', () => {
  it('pages oldest first by cursor, each job once, with state and queue filters', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await submit(t, { argv: ['true'], queue: 'other' })).id);
    for (const id of ids) await settle(t, id);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: Response = await t.http
        .get('/v1/jobs')
        .query({ queue: 'other', state: 'succeeded', limit: '3', ...(cursor ? { cursor } : {}) })
        .set(AUTH);
      expect(res.status).toBe(200);
      for (const j of res.body.items) expect(j).toMatchObject({ queue: 'other', state: 'succeeded' });
      seen.push(...res.body.items.map((j: { id: string }) => j.id));
      cursor = res.body.nextCursor;
      pages++;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.slice(-7)).toEqual(ids);
    expect(pages).toBeGreaterThanOrEqual(3);
    const none = await t.http.get('/v1/jobs?state=lost').set(AUTH);
    expect(none.body).toEqual({ items: [], nextCursor: null });
  });
});

describe('GET /v1/queues', () => {
  it('lists each queue with its workers and counts', async () => {
    const res = await t.http.get('/v1/queues').set(AUTH);
    expect(res.status).toBe(200);
    expect(res.body.map((q: { name: string }) => q.name)).toEqual(['default', 'other']);
    expect(res.body[1]).toMatchObject({ name: 'other', concurrency: 2, capacity: 10000, queued: 0, running: 0 });
    expect(res.body[0].processed).toBeGreaterThan(0);
    expect(res.body[0].failed).toBeGreaterThan(0);
  });
});

describe('lifecycle events', () => {
  it('queued, started (with its pid), finished, in that order, as Jobs', async () => {
    const seen: string[] = [];
    const { events } = t.app.services.jobs;
    const on = (name: 'queued' | 'started' | 'finished') => (job: { id: string; state: string; pid: number | null }) =>
      seen.push(`${name}:${job.state}:${job.pid === null ? 'nopid' : 'pid'}:${job.id}`);
    const listeners = { queued: on('queued'), started: on('started'), finished: on('finished') };
    for (const [name, fn] of Object.entries(listeners)) events.on(name as 'queued', fn);
    try {
      const job = await submit(t, { argv: ['true'] });
      await settle(t, job.id);
      expect(seen.filter((e) => e.endsWith(job.id)).map((e) => e.split(':').slice(0, 3).join(':'))).toEqual([
        'queued:queued:nopid',
        'started:running:pid',
        'finished:succeeded:pid',
      ]);
    } finally {
      for (const [name, fn] of Object.entries(listeners)) events.off(name as 'queued', fn);
    }
  });
});

describe('job processes are tracked', () => {
  // Node-local: the tracker of the node that runs the job (on Redis, the worker node).
  it.skipIf(ON_REDIS)('the run tracker knows a running job by its process group', async () => {
    const job = await submit(t, { argv: ['sleep', '30'] });
    const running = await waitRunning(job.id);
    expect(t.app.services.tracker.byPgid(running.pid!)).toMatchObject({ kind: 'job', jobId: job.id });
    await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH);
    expect(t.app.services.tracker.byPgid(running.pid!)).toBeUndefined();
  });
});

describe('unknown ids and bad input', () => {
  it('404 for an unknown id on every job route', async () => {
    const id = '00000000-0000-4000-8000-000000000000';
    const answers = await Promise.all([
      t.http.get(`/v1/jobs/${id}`).set(AUTH),
      t.http.get(`/v1/jobs/${id}?waitMs=100`).set(AUTH),
      t.http.post(`/v1/jobs/${id}/cancel`).set(AUTH),
      t.http.post(`/v1/jobs/${id}/signal`).set(AUTH).send({ signal: 'SIGTERM' }),
      t.http.delete(`/v1/jobs/${id}`).set(AUTH),
      t.http.get(`/v1/jobs/${id}/output`).set(AUTH),
    ]);
    for (const res of answers) {
      expect(res.status).toBe(404);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.body.code).toBe('NOT_FOUND');
    }
  });

  it.each([
    ['argv as a string', { argv: 'echo' }],
    ['an unknown field', { argv: ['true'], nice: 5 }],
    ['both argv and command', { argv: ['true'], command: 'true' }],
    ['an unknown queue', { argv: ['true'], queue: 'nope' }],
    ['a malformed queue name', { argv: ['true'], queue: 'a b' }],
    ['maxOutputBytes above the server cap', { argv: ['true'], maxOutputBytes: 1048577 }],
    ['stdin that is not base64', { argv: ['cat'], stdin: '@@', stdinEncoding: 'base64' }],
    ['a fractional timeout', { argv: ['true'], timeoutMs: 1.5 }],
  ])('POST /v1/jobs with %s is a 400', async (_, body) => {
    const res = await t.http.post('/v1/jobs').set(AUTH).send(body);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
  });

  it('an Idempotency-Key that is too long or not visible ASCII is a 400', async () => {
    for (const key of ['k'.repeat(256), 'a b']) {
      const res = await t.http.post('/v1/jobs').set(AUTH).set('idempotency-key', key).send({ argv: ['true'] });
      expect(res.status).toBe(400);
    }
  });

  it.each([
    '/v1/jobs?limit=0',
    '/v1/jobs?limit=1001',
    '/v1/jobs?limit=1.5',
    '/v1/jobs?limit=1e2',
    '/v1/jobs?limit=+5',
    '/v1/jobs?limit=05',
    '/v1/jobs?limit=',
    '/v1/jobs?limit=1&limit=2',
    '/v1/jobs?cursor=abc',
    '/v1/jobs?state=done',
    '/v1/jobs?queue=nope',
    '/v1/jobs?color=red',
    '/v1/jobs/x?waitMs=abc',
    '/v1/jobs/x?waitMs=-1',
    '/v1/jobs/x?waitMs=60001',
    '/v1/jobs/x?waitMs=%201',
    '/v1/jobs/x/output?offset=-1',
    '/v1/jobs/x/output?offset=0x10',
    '/v1/jobs/x/output?stream=both',
    '/v1/jobs/x/output?follow=yes',
  ])('GET %s is a 400', async (path) => {
    const res = await t.http.get(path).set(AUTH);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('VALIDATION_FAILED');
  });
});
