import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { waitFor } from '../helpers/proc.js';
import { call, Cluster, jobOf, linesOf, listAll, requireRedis, runningJob, settleJob, submitJob } from '../helpers/redis.js';
import { liveMembers } from '../helpers/server.js';

/**
 * Issue 21 on the Redis backend with real processes: which node accepted a job and which ran each attempt
 * (an api node and two workers), and `retry.on: ["lost"]`: a worker killed with -9 mid-job, its job runs again on
 * the other worker exactly once more, while a job that did not ask for it stays lost (at most once by default).
 */

requireRedis({ server: true });
const STALL_MS = 2000;
const work = mkdtempSync(join(tmpdir(), 'execd-redis-provenance-'));
let cluster: Cluster | undefined;
afterAll(async () => {
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
}, 30_000);

describe('three nodes: api A, workers W1 then W2', () => {
  it('a job retried on lost runs again on the other worker exactly once; provenance names every node; others stay lost', async () => {
    cluster = new Cluster({ env: { EXECD_QUEUES: 'default:2', EXECD_REDIS_STALL_MS: String(STALL_MS) } });
    const [A, W1] = await cluster.startAll(['api', 'worker']);
    const info = await call<{ node: string; hostname: string }>(A!, '/v1/info');
    expect(info.body.node).toBe(`${cluster.prefix}-${A!.name}`);
    const runs = join(work, 'runs.log');
    // the first run blocks (it is killed with its worker), a second one succeeds at once
    const command = `echo run >> '${runs}'; [ "$(wc -l < '${runs}')" -ge 2 ] && exit 0; sleep 300`;
    const retried = await submitJob(A!, { command, retry: { attempts: 3, backoffMs: 100, on: ['lost'] }, labels: { kind: 'retried' } });
    expect(retried.node).toBe(info.body.node);
    const once = await submitJob(A!, { command: `echo x >> '${runs}.once'; sleep 300`, retry: { attempts: 3, backoffMs: 100 } });
    const pgids = [(await runningJob(A!, retried.id)).pid!, (await runningJob(A!, once.id)).pid!];
    pgids.forEach((p) => cluster!.track(p));
    const first = await jobOf(A!, retried.id);
    expect(first.attempts).toHaveLength(1);
    expect(first.attempts[0]).toMatchObject({ attempt: 1, node: `${cluster.prefix}-${W1!.name}`, host: hostname(), state: 'running' });

    await W1!.crash();
    // declared lost within the stall interval: one scheduled for its retry, the other lost for good
    let lost: Job | undefined;
    expect(await waitFor(async () => (lost = await jobOf(A!, once.id)).state === 'lost', STALL_MS + 4000, 50)).toBe(true);
    expect(lost!.error?.code).toBe('WORKER_LOST');
    expect(lost!.attempt).toBe(1);
    const waiting = await jobOf(A!, retried.id);
    expect(['scheduled', 'queued']).toContain(waiting.state);
    expect(waiting.attempts[0]).toMatchObject({ state: 'lost', error: { code: 'WORKER_LOST' } });
    for (const pgid of pgids) expect(await waitFor(() => liveMembers(pgid).length === 0, 3000)).toBe(true);

    const W2 = await cluster.start('worker');
    const done = await settleJob(A!, retried.id);
    expect(done.state).toBe('succeeded');
    expect(done.attempt).toBe(2);
    expect(done.attempts.map((a) => [a.attempt, a.node, a.host, a.state])).toEqual([
      [1, `${cluster.prefix}-${W1!.name}`, hostname(), 'lost'],
      [2, `${cluster.prefix}-${W2.name}`, hostname(), 'succeeded'],
    ]);
    expect(done.node).toBe(info.body.node);
    // exactly once more: two runs in all, even after a few more stall intervals
    await new Promise((r) => setTimeout(r, STALL_MS));
    expect(linesOf(runs)).toHaveLength(2);
    expect(linesOf(`${runs}.once`)).toHaveLength(1);
    expect((await jobOf(A!, once.id)).state).toBe('lost');
    expect((await listAll(A!, 'label=kind=retried')).map((j) => j.id)).toEqual([retried.id]);
  }, 60_000);
});
