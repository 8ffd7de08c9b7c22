import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { AUTH, type TestApp } from '../helpers/app.js';
import { fixture, getJob, rawGet, settle, startJobsApp, submit } from '../helpers/jobs.js';
import { connect, reassemble } from '../helpers/stream.js';

let t: TestApp;
const work = mkdtempSync(join(tmpdir(), 'execd-retry-'));
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:2,solo:1', EXECD_JOB_MAX_ATTEMPTS: '5', EXECD_QUEUE_CAPACITY: '6' });
});
afterAll(async () => {
  await t.close();
  rmSync(work, { recursive: true, force: true });
});

/** A shell command that counts its runs in `file`, prints the count, and succeeds from run `okFrom` on. */
const flaky = (file: string, okFrom: number) =>
  `n=$(cat ${file} 2>/dev/null || echo 0); n=$((n+1)); echo $n > ${file}; echo "run $n"; echo "err $n" >&2; [ $n -ge ${okFrom} ]`;

async function waitState(id: string, state: Job['state'], timeoutMs = 10_000): Promise<Job> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJob(t, id);
    if (job.state === state || Date.now() > until) return job;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('retries', () => {
  it('retries a failing job with exponential backoff; each attempt has its own result and output offsets', async () => {
    const file = join(work, 'flaky1');
    const job = await submit(t, {
      command: flaky(file, 3), env: { SECRET: 'kept' }, retry: { attempts: 4, backoffMs: 200, backoff: 'exponential' },
    });
    expect(job.maxAttempts).toBe(4);
    expect(job.attempt).toBe(0);
    const done = await settle(t, job.id);
    expect(done.state).toBe('succeeded');
    expect(done.attempt).toBe(3);
    expect(done.attempts.map((a) => a.state)).toEqual(['failed', 'failed', 'succeeded']);
    expect(done.attempts.map((a) => a.result?.returncode)).toEqual([1, 1, 0]);
    const t0 = done.attempts.map((a) => ({ start: Date.parse(a.startedAt), end: Date.parse(a.finishedAt!) }));
    expect(t0[1]!.start - t0[0]!.end).toBeGreaterThanOrEqual(200);
    expect(t0[2]!.start - t0[1]!.end).toBeGreaterThanOrEqual(400); // doubled
    expect(t0[2]!.start - t0[1]!.end).toBeLessThan(3000);
    // one output per stream; each attempt begins where the one before ended
    expect((await rawGet(t, `/v1/jobs/${job.id}/output?stream=stdout`)).body.toString()).toBe('run 1\nrun 2\nrun 3\n');
    expect(done.attempts.map((a) => a.output)).toEqual([
      { stdout: 0, stderr: 0 }, { stdout: 6, stderr: 6 }, { stdout: 12, stderr: 12 },
    ]);
    expect(done.result?.returncode).toBe(0);
    expect(done.error).toBeNull();
    expect(done.attempts.every((a) => a.node && a.host)).toBe(true);
  });

  it('a retry runs with the same env values (kept until the last attempt), and never shows them', async () => {
    const job = await submit(t, { command: 'echo "$V"; exit 3', env: { V: 'hidden-value' }, retry: { attempts: 2, backoffMs: 0 } });
    const done = await settle(t, job.id);
    expect(done.state).toBe('failed');
    expect(done.attempt).toBe(2);
    expect((await rawGet(t, `/v1/jobs/${job.id}/output`)).body.toString()).toBe('hidden-value\nhidden-value\n');
    expect(JSON.stringify(done)).not.toContain('hidden-value');
  });

  it('retries timed_out when asked; fixed backoff; terminal only after the last attempt', async () => {
    const job = await submit(t, { command: 'sleep 5', timeoutMs: 100, retry: { attempts: 2, backoffMs: 100, backoff: 'fixed', on: ['timed_out'] } });
    const done = await settle(t, job.id);
    expect(done.state).toBe('timed_out');
    expect(done.attempts.map((a) => a.state)).toEqual(['timed_out', 'timed_out']);
    expect(Date.parse(done.attempts[1]!.startedAt) - Date.parse(done.attempts[0]!.finishedAt!)).toBeGreaterThanOrEqual(100);
  });

  it('does not retry an outcome its policy does not list (failed when on is [timed_out])', async () => {
    const job = await submit(t, { command: 'exit 1', retry: { attempts: 3, backoffMs: 0, on: ['timed_out'] } });
    const done = await settle(t, job.id);
    expect(done.state).toBe('failed');
    expect(done.attempt).toBe(1);
  });

  it('EXECD_JOB_MAX_ATTEMPTS caps attempts', async () => {
    const job = await submit(t, { command: 'exit 1', retry: { attempts: 50, backoffMs: 0 } });
    expect(job.maxAttempts).toBe(5);
    expect(job.spec.retry?.attempts).toBe(5);
    const done = await settle(t, job.id);
    expect(done.attempt).toBe(5);
  });

  it('cancel during the backoff ends the job canceled at once: no further attempt', async () => {
    const file = join(work, 'flaky-cancel');
    const job = await submit(t, { command: flaky(file, 99), retry: { attempts: 3, backoffMs: 60_000 } });
    const waiting = await waitState(job.id, 'scheduled');
    expect(waiting.state).toBe('scheduled');
    expect(waiting.attempt).toBe(1);
    expect(waiting.pid).toBeNull();
    expect(waiting.result).toBeNull(); // not terminal yet: the attempt's result is in attempts[]
    expect(waiting.attempts[0]).toMatchObject({ state: 'failed', result: { returncode: 1 } });
    expect(Date.parse(waiting.runAt!)).toBeGreaterThan(Date.now() + 50_000);
    const res = await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH);
    expect(res.status).toBe(200);
    expect(res.body.state).toBe('canceled');
    expect(res.body.attempts.length).toBe(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(readFileSync(file, 'utf8').trim()).toBe('1');
  });

  it('a WebSocket viewer sees each attempt wait and run, one output, then the final exit', async () => {
    const job = await submit(t, { command: 'echo x; exit 1', delayMs: 100, retry: { attempts: 2, backoffMs: 100 } });
    const ws = await connect(t, `/v1/jobs/${job.id}/stream`);
    const { frames } = await ws.all();
    const states = frames.filter((f) => f.type === 'state').map((f) => f.state);
    expect(states[0]).toBe('scheduled');
    expect(states.filter((s) => s === 'running')).toHaveLength(2);
    expect(states.filter((s) => s === 'scheduled')).toHaveLength(2);
    expect(reassemble(frames, 'stdout').bytes.toString()).toBe('x\nx\n');
    expect(frames.at(-1)).toMatchObject({ type: 'exit', state: 'failed' });
  });

  it('rejects bad retry policies with 400', async () => {
    for (const retry of [{ attempts: 0 }, { attempts: 101 }, { attempts: 2, backoffMs: -1 }, { attempts: 2, on: ['succeeded'] }, { attempts: 2, on: [] },
      { attempts: 2, backoff: 'linear' }, { attempts: 2, extra: 1 }]) {
      const res = await t.http.post('/v1/jobs').set(AUTH).send({ command: 'true', retry });
      expect(res.status, JSON.stringify(retry)).toBe(400);
    }
  });
});

describe('retries and the queue', () => {
  it('a job waiting its backoff does not hold up the jobs behind it (one worker), then re-enters at the back', async () => {
    const file = join(work, 'order.log');
    const first = await submit(t, { command: `echo a >> ${file}; exit 1`, queue: 'solo', retry: { attempts: 2, backoffMs: 300 } });
    const b = await submit(t, { argv: [fixture('append.sh'), file, 'b'], queue: 'solo' });
    const c = await submit(t, { argv: [fixture('append.sh'), file, 'c'], queue: 'solo' });
    for (const id of [b.id, c.id]) expect((await settle(t, id)).state).toBe('succeeded');
    const done = await settle(t, first.id);
    expect(done.state).toBe('failed');
    expect(readFileSync(file, 'utf8').trim().split('\n')).toEqual(['a', 'b', 'c', 'a']);
  });

  it('retries never run more than the queue\'s concurrency at once, and every retry runs', async () => {
    const file = join(work, 'intervals.log');
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const marker = join(work, `tried-${i}`);
      const command = `'${fixture('interval.sh')}' '${file}' ${i} 0.1; [ -e '${marker}' ] || { touch '${marker}'; exit 1; }`;
      ids.push((await submit(t, { command, retry: { attempts: 2, backoffMs: 50, backoff: 'fixed' } })).id);
    }
    for (const id of ids) expect((await settle(t, id)).attempts.map((a) => a.state)).toEqual(['failed', 'succeeded']);
    const events = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((line) => {
        const [kind, , ns] = line.split(' ');
        return { at: BigInt(ns!), delta: kind === 'start' ? 1 : -1 };
      })
      .sort((a, b) => (a.at === b.at ? a.delta - b.delta : a.at < b.at ? -1 : 1));
    expect(events.length).toBe(24); // 6 jobs × 2 attempts × start and end
    let now = 0;
    let peak = 0;
    for (const e of events) peak = Math.max(peak, (now += e.delta));
    expect(peak).toBe(2);
  });

  it('capacity counts jobs waiting a retry: a full queue answers 503', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      ids.push((await submit(t, { command: 'exit 1', queue: 'solo', retry: { attempts: 2, backoffMs: 60_000 } })).id);
    }
    for (const id of ids) expect((await waitState(id, 'scheduled')).state).toBe('scheduled');
    const queues = await t.http.get('/v1/queues').set(AUTH);
    expect(queues.body.find((q: { name: string }) => q.name === 'solo').scheduled).toBe(6);
    const full = await t.http.post('/v1/jobs').set(AUTH).send({ command: 'true', queue: 'solo' });
    expect(full.status).toBe(503);
    for (const id of ids) expect((await t.http.post(`/v1/jobs/${id}/cancel`).set(AUTH)).body.state).toBe('canceled');
    expect((await submit(t, { command: 'true', queue: 'solo' })).state).toMatch(/queued|running/);
  });
});

describe('a policy rule caps attempts', () => {
  it('maxAttempts lowers retry.attempts for the jobs the rule admits', async () => {
    const policy = join(work, 'policy.yaml');
    writeFileSync(policy, 'rules:\n  - name: capped\n    shell: true\n    maxAttempts: 2\n');
    const p = await startJobsApp({ EXECD_POLICY_FILE: policy });
    try {
      const job = await submit(p, { command: 'exit 1', retry: { attempts: 4, backoffMs: 0 } });
      expect(job.maxAttempts).toBe(2);
      const done = await settle(p, job.id);
      expect(done.attempts.map((a) => a.state)).toEqual(['failed', 'failed']);
    } finally {
      await p.close();
    }
  });
});
