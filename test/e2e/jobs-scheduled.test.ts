import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH, ON_REDIS, type TestApp } from '../helpers/app.js';
import { fixture, settle, startJobsApp, submit } from '../helpers/jobs.js';

let t: TestApp;
const work = mkdtempSync(join(tmpdir(), 'execd-scheduled-'));
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:2,solo:1', EXECD_QUEUE_CAPACITY: '2' });
});
afterAll(async () => {
  await t.close();
  rmSync(work, { recursive: true, force: true });
});

describe('delayed start', () => {
  it('delayMs: scheduled until then, then queued and run', async () => {
    const before = Date.now();
    const job = await submit(t, { command: 'echo hi', delayMs: 400 });
    expect(job.state).toBe('scheduled');
    expect(Date.parse(job.runAt!)).toBeGreaterThanOrEqual(before + 400);
    expect(job.position).toBeNull();
    const mid = await t.http.get(`/v1/jobs/${job.id}`).set(AUTH);
    expect(mid.body.state).toBe('scheduled');
    const done = await settle(t, job.id);
    expect(done.state).toBe('succeeded');
    expect(done.runAt).toBeNull();
    expect(Date.parse(done.startedAt!)).toBeGreaterThanOrEqual(before + 400);
  });

  it('notBefore: a future time schedules, a past one queues at once', async () => {
    const at = new Date(Date.now() + 300).toISOString();
    const later = await submit(t, { command: 'true', notBefore: at });
    expect(later.state).toBe('scheduled');
    expect(later.runAt).toBe(at);
    const past = await submit(t, { command: 'true', notBefore: '2001-01-01T00:00:00Z' });
    expect(past.state).not.toBe('scheduled');
    expect((await settle(t, past.id)).state).toBe('succeeded');
    const done = await settle(t, later.id);
    expect(Date.parse(done.startedAt!)).toBeGreaterThanOrEqual(Date.parse(at));
  });

  it('refuses both at once, a far future, a malformed time, a negative delay: 400', async () => {
    const far = new Date(Date.now() + 8 * 24 * 3_600_000).toISOString();
    for (const extra of [
      { notBefore: new Date().toISOString(), delayMs: 10 }, { notBefore: far }, { notBefore: 'tomorrow' }, { delayMs: -1 },
      { delayMs: 8 * 24 * 3_600_000 },
    ]) {
      const res = await t.http.post('/v1/jobs').set(AUTH).send({ command: 'true', ...extra });
      expect(res.status, JSON.stringify(extra)).toBe(400);
      expect(res.headers['content-type']).toMatch(/problem\+json/);
    }
  });

  it('cancel while scheduled: canceled at once, never runs', async () => {
    const file = join(work, 'never');
    const job = await submit(t, { command: `touch ${file}`, delayMs: 300 });
    const res = await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH);
    expect(res.status).toBe(200);
    expect(res.body.state).toBe('canceled');
    await new Promise((r) => setTimeout(r, 500));
    expect(() => readFileSync(file)).toThrow();
    expect((await t.http.get(`/v1/jobs/${job.id}`).set(AUTH)).body.state).toBe('canceled');
  });

  it('scheduled jobs count against capacity; list by state=scheduled', async () => {
    const a = await submit(t, { command: 'true', queue: 'solo', delayMs: 60_000 });
    const b = await submit(t, { command: 'true', queue: 'solo', delayMs: 60_000 });
    const full = await t.http.post('/v1/jobs').set(AUTH).send({ command: 'true', queue: 'solo' });
    expect(full.status).toBe(503);
    const list = await t.http.get('/v1/jobs?state=scheduled&queue=solo').set(AUTH);
    expect(list.body.items.map((j: { id: string }) => j.id)).toEqual([a.id, b.id]);
    for (const j of [a, b]) await t.http.post(`/v1/jobs/${j.id}/cancel`).set(AUTH);
  });

  it('when their times come, delayed jobs queue in time order behind the jobs already queued', async () => {
    const file = join(work, 'order.log');
    const gate = join(work, 'gate');
    const blocker = await submit(t, { argv: [fixture('gate.sh'), gate], queue: 'solo' });
    const late = await submit(t, { argv: [fixture('append.sh'), file, 'late'], queue: 'solo', delayMs: 200 });
    const early = await submit(t, { argv: [fixture('append.sh'), file, 'early'], queue: 'solo', delayMs: 100 });
    await new Promise((r) => setTimeout(r, 400));
    // both are queued now (in the order their times came), behind nothing but the running blocker
    const lateNow = (await t.http.get(`/v1/jobs/${late.id}`).set(AUTH)).body;
    expect(lateNow.state).toBe('queued');
    expect(lateNow.position).toBe(1);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(gate, 'go');
    for (const j of [blocker, early, late]) expect((await settle(t, j.id)).state).toBe('succeeded');
    expect(readFileSync(file, 'utf8').trim().split('\n')).toEqual(['early', 'late']);
  });

  // Memory: scheduled jobs die with the process like queued ones; on Redis they stay for the other nodes (docs/redis.md).
  it.skipIf(ON_REDIS)('a shutdown cancels scheduled jobs (SHUTTING_DOWN), and one in its retry backoff', async () => {
    const s = await startJobsApp();
    try {
      const later = await submit(s, { command: 'true', delayMs: 60_000 });
      const retried = await submit(s, { command: 'exit 1', retry: { attempts: 3, backoffMs: 60_000 } });
      for (let i = 0; i < 200 && (await s.app.services.jobs.get(retried.id))?.state !== 'scheduled'; i++) await new Promise((r) => setTimeout(r, 20));
      await s.app.services.jobs.drain();
      for (const id of [later.id, retried.id]) {
        expect(await s.app.services.jobs.get(id)).toMatchObject({ state: 'canceled', error: { code: 'SHUTTING_DOWN' } });
      }
    } finally {
      await s.close();
    }
  });
});
