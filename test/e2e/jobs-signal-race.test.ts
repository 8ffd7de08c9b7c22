import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';
import { connect, type Frame } from '../helpers/stream.js';

/**
 * A job says `running` (pid null) from the moment a worker takes it, a moment before its process exists
 * (on Redis: START, then the spawn on the worker node, then STARTED). A signal in that window used to be
 * refused (409 "starting, or just exited") while the job ran on; it must be held and delivered.
 */
const ROUNDS = 20;

let t: TestApp;
beforeAll(async () => {
  t = await startApp({ EXECD_QUEUES: 'default:4' });
});
afterAll(async () => t.close());

interface Round {
  /** Signals refused because the job was still queued (correct), before the one taken. */
  queuedRefusals: number;
  job: { id: string; state: string; result: { signal: string | null } | null };
}

async function submit(): Promise<string> {
  const res = await t.http.post('/v1/jobs').set(AUTH).send({ argv: ['sleep', '30'] });
  expect(res.status).toBe(202);
  return res.body.id as string;
}

async function settled(id: string): Promise<Round['job']> {
  const res = await t.http.get(`/v1/jobs/${id}?waitMs=10000`).set(AUTH);
  return res.body as Round['job'];
}

describe('a signal to a job that says running is delivered, even before its process exists', () => {
  it(`HTTP: POST /signal sent as soon as the job leaves the queue, ${ROUNDS} times: every job ends by that signal`, async () => {
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const id = await submit();
      let queuedRefusals = 0;
      for (;;) {
        const res = await t.http.post(`/v1/jobs/${id}/signal`).set(AUTH).send({ signal: 'SIGTERM' });
        if (res.status === 202) break;
        // Only "still queued" may refuse it; "no live process" for a running job is the bug.
        expect(res.status, JSON.stringify(res.body)).toBe(409);
        expect(res.body.state, JSON.stringify(res.body)).toBe('queued');
        queuedRefusals++;
      }
      rounds.push({ queuedRefusals, job: await settled(id) });
    }
    for (const { job } of rounds) {
      expect(job.state, JSON.stringify(job)).toBe('failed');
      expect(job.result?.signal).toBe('SIGTERM');
    }
  }, 120_000);

  it('WebSocket: a signal frame sent as soon as the job leaves the queue is delivered', async () => {
    for (let i = 0; i < ROUNDS / 2; i++) {
      const id = await submit();
      const client = await connect(t, `/v1/jobs/${id}/stream`);
      // Send, and look at the answer: an error frame is a refusal; none within a moment, the frame was taken.
      for (;;) {
        const before = client.frames.length;
        client.send({ type: 'signal', signal: 'SIGTERM' });
        const refusal = await Promise.race([
          client.next((f: Frame) => f.type === 'error' && client.frames.indexOf(f) >= before),
          new Promise<null>((r) => setTimeout(() => r(null), 200)),
        ]);
        if (refusal === null) break;
        expect(refusal.detail, JSON.stringify(refusal)).toMatch(/is queued/);
      }
      const exit = await client.next((f) => f.type === 'exit');
      expect(exit.signal, JSON.stringify(client.frames)).toBe('SIGTERM');
      await client.closed;
    }
  }, 120_000);
});
