import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestApp } from '../helpers/app.js';
import { fixture, settle, startJobsApp, submit } from '../helpers/jobs.js';

let t: TestApp;
const work = mkdtempSync(join(tmpdir(), 'execd-order-'));
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'solo:1,wide:3' });
});
afterAll(async () => {
  await t.close();
  rmSync(work, { recursive: true, force: true });
});

describe('FIFO', () => {
  it('200 jobs on a one-worker queue start in the order they were accepted', async () => {
    const file = join(work, 'fifo.log');
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) ids.push((await submit(t, { argv: [fixture('append.sh'), file, String(i)], queue: 'solo' })).id);
    await settle(t, ids.at(-1)!);
    const jobs = await Promise.all(ids.map((id) => settle(t, id)));
    expect(jobs.every((j) => j.state === 'succeeded')).toBe(true);
    expect(readFileSync(file, 'utf8').trim().split('\n').map(Number)).toEqual([...Array(200).keys()]);
    const starts = jobs.map((j) => Date.parse(j.startedAt!));
    for (let i = 1; i < starts.length; i++) expect(starts[i]).toBeGreaterThanOrEqual(starts[i - 1]!);
    // one worker: each starts only after the one before it finished
    for (let i = 1; i < jobs.length; i++) {
      expect(Date.parse(jobs[i]!.result!.startedAt)).toBeGreaterThanOrEqual(Date.parse(jobs[i - 1]!.result!.finishedAt));
    }
  });
});

describe('concurrency', () => {
  it('never more than N jobs run at once (as the processes themselves saw it), and N do', async () => {
    const file = join(work, 'intervals.log');
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push((await submit(t, { argv: [fixture('interval.sh'), file, String(i), '0.15'], queue: 'wide' })).id);
    for (const id of ids) expect((await settle(t, id)).state).toBe('succeeded');
    const events = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .map((line) => {
        const [kind, , ns] = line.split(' ');
        return { at: BigInt(ns!), delta: kind === 'start' ? 1 : -1 };
      })
      // at equal times count the ends first: touching intervals do not overlap
      .sort((a, b) => (a.at === b.at ? a.delta - b.delta : a.at < b.at ? -1 : 1));
    expect(events.length).toBe(24);
    let now = 0;
    let peak = 0;
    for (const e of events) peak = Math.max(peak, (now += e.delta));
    expect(peak).toBe(3);
  });
});
