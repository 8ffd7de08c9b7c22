import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';
import { startJobsApp, submit, waitRunning } from '../helpers/jobs.js';

let t: TestApp;
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:2,tiny:1', EXECD_QUEUE_CAPACITY: '2' });
});
afterAll(() => t.close());

const post = (body: object, key?: string) => {
  const req = t.http.post('/v1/jobs').set(AUTH);
  return key === undefined ? req.send(body) : req.set('idempotency-key', key).send(body);
};

describe('Idempotency-Key', () => {
  it('the same key and body answer the same job with 200; another body is a 409', async () => {
    const first = await post({ argv: ['echo', 'a'], env: { X: '1', Y: '2' } }, 'key-1');
    expect(first.status).toBe(202);
    const again = await post({ env: { Y: '2', X: '1' }, argv: ['echo', 'a'] }, 'key-1');
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(first.body.id);
    expect(again.headers.location).toBe(`/v1/jobs/${first.body.id}`);
    const explicitQueue = await post({ argv: ['echo', 'a'], env: { X: '1', Y: '2' }, queue: 'default' }, 'key-1');
    expect(explicitQueue.body.id).toBe(first.body.id);
    for (const other of [{ argv: ['echo', 'b'] }, { argv: ['echo', 'a'], env: { X: '1', Y: '3' } }, { argv: ['echo', 'a'], env: { X: '1', Y: '2' }, queue: 'tiny' }]) {
      const res = await post(other, 'key-1');
      expect(res.status).toBe(409);
      expect(res.body).toMatchObject({ code: 'CONFLICT', jobId: first.body.id });
    }
    const otherKey = await post({ argv: ['echo', 'a'], env: { X: '1', Y: '2' } }, 'key-2');
    expect(otherKey.status).toBe(202);
    expect(otherKey.body.id).not.toBe(first.body.id);
    const [n1, n2] = [await post({ argv: ['true'] }), await post({ argv: ['true'] })];
    expect(n1.body.id).not.toBe(n2.body.id);
  });
});

describe('queue full', () => {
  it('past EXECD_QUEUE_CAPACITY waiting jobs: 503 QUEUE_FULL with Retry-After; room again once one leaves', async () => {
    const blocker = await submit(t, { argv: ['sleep', '30'], queue: 'tiny' });
    await waitRunning(t, blocker.id);
    const waiting = [await submit(t, { argv: ['true'], queue: 'tiny' }), await submit(t, { argv: ['true'], queue: 'tiny' })];
    const full = await post({ argv: ['true'], queue: 'tiny' });
    expect(full.status).toBe(503);
    expect(full.headers['retry-after']).toMatch(/^\d+$/);
    expect(full.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(full.body.code).toBe('QUEUE_FULL');
    expect((await post({ argv: ['true'], queue: 'default' })).status).toBe(202);
    await t.http.post(`/v1/jobs/${waiting[0]!.id}/cancel`).set(AUTH);
    expect((await post({ argv: ['true'], queue: 'tiny' })).status).toBe(202);
    await t.http.post(`/v1/jobs/${blocker.id}/cancel`).set(AUTH);
  });
});

describe('synchronous runs are bounded too', () => {
  it('past EXECD_MAX_SYNC_RUNS a /v1/run answers 503 QUEUE_FULL with Retry-After instead of piling up', async () => {
    const s = await startApp({ EXECD_MAX_SYNC_RUNS: '1' });
    try {
      const slow = s.http.post('/v1/run').set(AUTH).send({ argv: ['sleep', '0.5'] });
      const pending = slow.then((r) => r);
      expect(await waitFor(() => s.app.services.syncRuns.running === 1)).toBe(true);
      const refused = await s.http.post('/v1/run').set(AUTH).send({ argv: ['true'] });
      expect(refused.status).toBe(503);
      expect(refused.body.code).toBe('QUEUE_FULL');
      expect(refused.headers['retry-after']).toMatch(/^\d+$/);
      expect((await pending).status).toBe(200);
      expect((await s.http.post('/v1/run').set(AUTH).send({ argv: ['true'] })).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});
