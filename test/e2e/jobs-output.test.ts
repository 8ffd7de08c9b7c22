import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH, type TestApp, ON_REDIS } from '../helpers/app.js';
import { fixture, getJob, pattern, rawGet, settle, startJobsApp, submit, waitRunning } from '../helpers/jobs.js';

let t: TestApp & { dataDir: string };
const work = mkdtempSync(join(tmpdir(), 'execd-output-'));
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:4,solo:1', EXECD_OUTPUT_MEMORY_BYTES: '65536' });
});
afterAll(async () => {
  await t.close();
  rmSync(work, { recursive: true, force: true });
});

describe('long-poll GET /v1/jobs/{id}?waitMs=', () => {
  it('answers as soon as the job is terminal', async () => {
    const job = await submit(t, { argv: ['sleep', '0.3'] });
    const t0 = Date.now();
    const done = await getJob(t, job.id, 10_000);
    expect(done.state).toBe('succeeded');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(200);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it('answers the job as it is once waitMs pass', async () => {
    const job = await submit(t, { argv: ['sleep', '30'] });
    const t0 = Date.now();
    const still = await getJob(t, job.id, 300);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(still.state).toBe('running');
    await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH);
  });
});

describe('GET /v1/jobs/{id}/output?follow=true', () => {
  it('delivers bytes as the job writes them and ends at exit with the status in trailers', async () => {
    const gate = join(work, 'gate-1');
    const job = await submit(t, { argv: [fixture('gate.sh'), gate, '3'] });
    let sawFirstWhileRunning = false;
    const res = await rawGet(t, `/v1/jobs/${job.id}/output?follow=true`, (_, soFar) => {
      if (soFar.toString() === 'first\n' && !existsSync(gate)) {
        // the first line arrived while the job is still blocked on the gate
        void getJob(t, job.id).then((j) => {
          sawFirstWhileRunning = j.state === 'running';
          writeFileSync(gate, '');
        });
      }
    });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('first\nsecond\n');
    expect(sawFirstWhileRunning).toBe(true);
    expect(res.headers['x-output-offset']).toBe('0');
    expect(res.headers.trailer).toMatch(/x-exit-code/);
    expect(res.trailers).toMatchObject({ 'x-job-state': 'failed', 'x-exit-code': '3', 'x-signal': '', 'x-returncode': '3', 'x-output-end': '13' });
  });

  it('a slow follower never holds the job back, and still gets every byte in order', async () => {
    const size = 20_000_000;
    const job = await submit(t, { argv: [fixture('pattern.sh'), String(size)] });
    const chunks: Buffer[] = [];
    let finishedWhilePaused = false;
    const trailers = await new Promise<Record<string, string | undefined>>((resolve, reject) => {
      const req = request(`${t.url}/v1/jobs/${job.id}/output?follow=true`, { headers: AUTH, agent: false }, (res) => {
        res.once('data', () => {
          res.pause(); // a reader that stops reading: the server must not buffer for it nor slow the job
          void settle(t, job.id).then((j) => {
            finishedWhilePaused = j.state === 'succeeded';
            res.resume();
          });
        });
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(res.trailers as Record<string, string>));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    expect(finishedWhilePaused).toBe(true);
    expect(Buffer.concat(chunks).equals(pattern(size))).toBe(true);
    expect(trailers).toMatchObject({ 'x-job-state': 'succeeded', 'x-exit-code': '0', 'x-output-end': String(size) });
  });

  it('on a queued job waits for it to start; a job canceled before starting ends the stream empty', async () => {
    const blocker = await submit(t, { argv: ['sleep', '30'], queue: 'solo' });
    const queued = await submit(t, { command: 'echo late', queue: 'solo' });
    const follow = rawGet(t, `/v1/jobs/${queued.id}/output?follow=true`);
    await waitRunning(t, blocker.id);
    await t.http.post(`/v1/jobs/${queued.id}/cancel`).set(AUTH);
    const res = await follow;
    expect(res.body.length).toBe(0);
    expect(res.trailers).toMatchObject({ 'x-job-state': 'canceled', 'x-exit-code': '' });

    const next = await submit(t, { command: 'echo late', queue: 'solo' });
    const follow2 = rawGet(t, `/v1/jobs/${next.id}/output?follow=true`);
    await t.http.post(`/v1/jobs/${blocker.id}/cancel`).set(AUTH);
    const res2 = await follow2;
    expect(res2.body.toString()).toBe('late\n');
    expect(res2.trailers['x-job-state']).toBe('succeeded');
  });

  it('follows stderr with an offset, and a merged stderr shows on stdout', async () => {
    const job = await settle(t, (await submit(t, { command: 'echo one >&2; echo two >&2' })).id);
    const res = await rawGet(t, `/v1/jobs/${job.id}/output?stream=stderr&offset=4&follow=true`);
    expect(res.body.toString()).toBe('two\n');
    const merged = await settle(t, (await submit(t, { command: 'echo a; echo b >&2', stderr: 'merge' })).id);
    expect(merged.outputBytes).toEqual({ stdout: 4, stderr: 0 });
  });
});

describe('offsets', () => {
  const SIZE = 300_000; // past the 64 KiB memory bound: the log spilled to its file
  let big: string;
  let small: string;
  beforeAll(async () => {
    big = (await settle(t, (await submit(t, { argv: [fixture('pattern.sh'), String(SIZE)] })).id)).id;
    small = (await settle(t, (await submit(t, { argv: [fixture('pattern.sh'), '1000'] })).id)).id;
  });

  it.skipIf(ON_REDIS)('any offset reads exactly the bytes from there, from memory and from the spill file', async () => {
    for (const [id, size] of [[big, SIZE], [small, 1000]] as const) {
      const want = pattern(size);
      for (const offset of [0, 1, 16, 17, 999, 1000, 65535, 65536, 65537, 100_000, SIZE - 1, SIZE].filter((o) => o <= size)) {
        const res = await rawGet(t, `/v1/jobs/${id}/output?offset=${offset}`);
        expect(res.status).toBe(200);
        expect(res.headers['x-output-offset']).toBe(String(offset));
        expect(res.headers['x-output-end']).toBe(String(size));
        expect(res.headers['content-length']).toBe(String(size - offset));
        expect(res.body.equals(want.subarray(offset)), `offset ${offset} of ${size}`).toBe(true);
      }
    }
    expect(existsSync(join(t.app.services.files.filesDir, 'jobs', `${big}.stdout`))).toBe(true);
    expect(existsSync(join(t.app.services.files.filesDir, 'jobs', `${small}.stdout`))).toBe(false);
  });

  it('an interrupted read resumes exactly at X-Output-Offset + bytes received', async () => {
    const want = pattern(SIZE);
    let got = Buffer.alloc(0);
    let offset = 0;
    for (let round = 0; round < 20 && offset < SIZE; round++) {
      const res = await rawGet(t, `/v1/jobs/${big}/output?offset=${offset}&follow=true`, (_, soFar) => soFar.length < 50_000);
      expect(Number(res.headers['x-output-offset'])).toBe(offset);
      got = Buffer.concat([got, res.body]);
      offset = Number(res.headers['x-output-offset']) + res.body.length;
    }
    expect(got.equals(want)).toBe(true);
  });

  it('an offset past the end is a 400 with the end', async () => {
    const res = await t.http.get(`/v1/jobs/${small}/output?offset=1001`).set(AUTH);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'VALIDATION_FAILED', end: 1000 });
    expect((await t.http.get(`/v1/jobs/${small}/output?offset=1001&follow=true`).set(AUTH)).status).toBe(400);
  });
});
