import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { AUTH, ON_REDIS } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';
import { fixture, settle, startJobsApp, submit } from '../helpers/jobs.js';

type JobsApp = Awaited<ReturnType<typeof startJobsApp>>;
let t: JobsApp | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

const outputFile = (app: JobsApp, id: string) => join(app.app.services.files.filesDir, 'jobs', `${id}.stdout`);
/** Where the job's output is kept: its spill file (memory backend), or its Redis stream (redis backend). */
async function outputKept(app: JobsApp, id: string): Promise<boolean> {
  if (!ON_REDIS) return existsSync(outputFile(app, id));
  const redis = new Redis(app.config.redisUrl!, { maxRetriesPerRequest: 1 });
  try {
    return (await redis.exists(`${app.config.redisPrefix}:out:${id}:stdout`)) === 1;
  } finally {
    redis.disconnect();
  }
}
const status = async (app: JobsApp, id: string) => (await app.http.get(`/v1/jobs/${id}`).set(AUTH)).status;

describe('retention', () => {
  it('by count: past EXECD_RETAIN_JOBS the oldest-finished job and its output (file or stream) go', async () => {
    t = await startJobsApp({ EXECD_QUEUES: 'default:1', EXECD_RETAIN_JOBS: '2', EXECD_OUTPUT_MEMORY_BYTES: '1024' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const job = await settle(t, (await submit(t, { argv: [fixture('pattern.sh'), '5000'] })).id);
      expect(job.outputBytes.stdout).toBe(5000);
      ids.push(job.id);
      expect(await outputKept(t, job.id)).toBe(true);
    }
    expect(await status(t, ids[0]!)).toBe(404);
    expect(await outputKept(t, ids[0]!)).toBe(false);
    for (const id of ids.slice(1)) {
      expect(await status(t, id)).toBe(200);
      expect(await outputKept(t, id)).toBe(true);
    }
    const list = await t.http.get('/v1/jobs').set(AUTH);
    expect(list.body.items.map((j: { id: string }) => j.id)).toEqual(ids.slice(1));
  });

  it('by age: a finished job is removed EXECD_RETAIN_MS after it finished, with its output; a queued one is not', async () => {
    t = await startJobsApp({ EXECD_QUEUES: 'default:1', EXECD_RETAIN_MS: '300', EXECD_OUTPUT_MEMORY_BYTES: '1024' });
    const app = t;
    const done = await settle(app, (await submit(app, { argv: [fixture('pattern.sh'), '5000'] })).id);
    expect(await outputKept(app, done.id)).toBe(true);
    const blocker = await submit(app, { argv: ['sleep', '30'] });
    const queued = await submit(app, { argv: ['true'] });
    expect(await status(app, done.id)).toBe(200);
    expect(await waitFor(async () => (await status(app, done.id)) === 404, 3000)).toBe(true);
    expect(Date.now() - Date.parse(done.finishedAt!)).toBeGreaterThanOrEqual(290);
    expect(await outputKept(app, done.id)).toBe(false);
    expect(await status(app, blocker.id)).toBe(200);
    expect(await status(app, queued.id)).toBe(200);
  });

  it('idempotency keys are forgotten with their job', async () => {
    t = await startJobsApp({ EXECD_RETAIN_JOBS: '0' });
    const app = t;
    const first = await app.http.post('/v1/jobs').set(AUTH).set('idempotency-key', 'k').send({ argv: ['true'] });
    await waitFor(async () => (await status(app, first.body.id)) === 404);
    const again = await app.http.post('/v1/jobs').set(AUTH).set('idempotency-key', 'k').send({ argv: ['false'] });
    expect(again.status).toBe(202);
  });
});
