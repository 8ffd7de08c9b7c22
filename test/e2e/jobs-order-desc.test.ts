import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { AUTH, type TestApp } from '../helpers/app.js';
import { settle, startJobsApp, submit } from '../helpers/jobs.js';

// GET /v1/jobs?order=desc: newest first, a cursor page at a time, with the filters; on the suite's backend
// (memory, or Redis with EXECD_TEST_QUEUE_BACKEND=redis).

let t: TestApp;
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:2,other:1' });
});
afterAll(async () => {
  await t.close();
});

interface Page {
  items: Job[];
  nextCursor: string | null;
}
const ids = (jobs: Job[]) => jobs.map((j) => j.id);

async function page(query: Record<string, string | string[]>): Promise<Page> {
  const res = await t.http.get('/v1/jobs').query(query).set(AUTH);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as Page;
}

/** Every page of a walk; `between` runs after each page. Passes only nextCursor on (its order goes with it) unless `keepOrder`. */
async function walk(
  query: Record<string, string | string[]>,
  keepOrder = false,
  between?: (p: Page) => Promise<void>,
): Promise<{ seen: string[]; pages: Page[] }> {
  const pages: Page[] = [];
  let cursor: string | null = null;
  for (let n = 0; n < 500; n++) {
    const { order: _order, ...unordered } = query;
    const p = await page(cursor === null ? query : { ...(keepOrder ? query : unordered), cursor });
    pages.push(p);
    await between?.(p);
    cursor = p.nextCursor;
    if (cursor === null) break;
  }
  expect(cursor).toBeNull();
  return { seen: pages.flatMap((p) => ids(p.items)), pages };
}

/** Submitted in this order: [id, queue, failed?, team label]. */
const made: { id: string; queue: string; fails: boolean; team: string }[] = [];

describe('GET /v1/jobs?order=desc', () => {
  beforeAll(async () => {
    for (let i = 0; i < 12; i++) {
      const spec = { queue: i % 3 === 0 ? 'other' : 'default', fails: i % 2 === 1, team: i % 4 < 2 ? 'web' : 'db' };
      const job = await submit(t, { command: spec.fails ? 'exit 3' : 'true', queue: spec.queue, labels: { team: spec.team } });
      made.push({ id: job.id, ...spec });
    }
    for (const m of made) await settle(t, m.id);
  });

  it('lists newest first, the reverse of the default (asc) order, and the default is unchanged', async () => {
    const all = made.map((m) => m.id);
    const asc = await page({ limit: '1000' });
    expect(ids(asc.items)).toEqual(all);
    expect(ids((await page({ limit: '1000', order: 'asc' })).items)).toEqual(all);
    const desc = await page({ limit: '1000', order: 'desc' });
    expect(ids(desc.items)).toEqual([...all].reverse());
    expect(desc.nextCursor).toBeNull();
    const first = await page({ limit: '1', order: 'desc' });
    expect(ids(first.items)).toEqual([all.at(-1)]);
  });

  it('pages newest first through the cursor, each job once; the cursor alone continues in its order', async () => {
    const reversed = made.map((m) => m.id).reverse();
    for (const limit of ['1', '5', '12']) {
      // with order=desc repeated on every page, and with only the cursor after the first page
      for (const keepOrder of [true, false]) {
        const { seen, pages } = await walk({ order: 'desc', limit }, keepOrder);
        expect(seen, `limit ${limit}`).toEqual(reversed);
        for (const p of pages.slice(0, -1)) expect(p.nextCursor).toMatch(/^d[0-9]+$/);
      }
    }
    // ascending cursors stay digits only, as before
    const asc = await walk({ limit: '5' });
    expect(asc.seen).toEqual(made.map((m) => m.id));
    for (const p of asc.pages.slice(0, -1)) expect(p.nextCursor).toMatch(/^[0-9]+$/);
  });

  it('holds with the state, queue and label filters (alone and together)', async () => {
    const newestFirst = [...made].reverse();
    const cases: [Record<string, string | string[]>, (m: (typeof made)[number]) => boolean][] = [
      [{ state: 'failed' }, (m) => m.fails],
      [{ state: 'succeeded', label: 'team=web' }, (m) => !m.fails && m.team === 'web'],
      [{ queue: 'other', label: 'team=db' }, (m) => m.queue === 'other' && m.team === 'db'],
      [{ state: 'failed', queue: 'default', label: ['team=web', 'team=web'] }, (m) => m.fails && m.queue === 'default' && m.team === 'web'],
      [{ state: 'running' }, () => false],
    ];
    for (const [filter, keep] of cases) {
      const expected = newestFirst.filter(keep).map((m) => m.id);
      if (filter.state !== 'running') expect(expected.length, JSON.stringify(filter)).toBeGreaterThan(0);
      const { seen } = await walk({ ...filter, order: 'desc', limit: '1' });
      expect(seen, JSON.stringify(filter)).toEqual(expected);
      expect(ids((await page({ ...filter, order: 'desc', limit: '100' })).items)).toEqual(expected);
    }
  });

  it('a walk lists each job still kept once while jobs are added and removed (new ones are past its start)', async () => {
    const before = made.map((m) => m.id).reverse();
    const removed = before[7]!; // on a later page
    let added: Job | undefined;
    const { seen } = await walk({ order: 'desc', limit: '3' }, false, async () => {
      if (added) return;
      added = await submit(t, { command: 'true', labels: { team: 'late' } });
      expect((await t.http.delete(`/v1/jobs/${removed}`).set(AUTH)).status).toBe(204);
    });
    expect(seen).toEqual(before.filter((id) => id !== removed));
    // a new walk starts at the newest
    expect(ids((await page({ order: 'desc', limit: '1' })).items)).toEqual([added!.id]);
    await settle(t, added!.id);
    made.splice(made.findIndex((m) => m.id === removed), 1);
  });

  it('scans past long runs of jobs that do not match, in both orders', async () => {
    // More jobs than one Redis scan batch (100) between two matches: scheduled, so nothing runs.
    const rare: string[] = [];
    const filler: Promise<Job>[] = [];
    rare.push((await submit(t, { command: 'true', delayMs: 3_600_000, labels: { rare: 'yes' } })).id);
    for (let i = 0; i < 130; i++) filler.push(submit(t, { command: 'true', delayMs: 3_600_000, labels: { team: 'filler' } }));
    await Promise.all(filler);
    rare.push((await submit(t, { command: 'true', delayMs: 3_600_000, labels: { rare: 'yes' } })).id);
    for (let i = 0; i < 3; i++) await submit(t, { command: 'true', delayMs: 3_600_000, labels: { team: 'filler' } });
    const desc = await walk({ label: 'rare=yes', order: 'desc', limit: '1' });
    expect(desc.seen).toEqual([...rare].reverse());
    expect((await walk({ label: 'rare=yes', limit: '1' })).seen).toEqual(rare);
    const scheduled = await walk({ state: 'scheduled', order: 'desc', limit: '50' });
    expect(scheduled.seen.length).toBe(135);
    expect(scheduled.seen.at(-1)).toBe(rare[0]);
    expect(scheduled.seen[3]).toBe(rare[1]);
  });
});

describe('GET /v1/jobs order and cursor: bad input is a 400', () => {
  it.each(['order=up', 'order=DESC', 'order=', 'order=asc&order=desc', 'cursor=d', 'cursor=dd1', 'cursor=D1', 'cursor=1d', 'cursor=d-1'])(
    '%s is a 400',
    async (query) => {
      const res = await t.http.get(`/v1/jobs?${query}`).set(AUTH);
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
    },
  );

  it('a cursor used with the other order is a 400 that says which order it continues', async () => {
    const desc = await page({ order: 'desc', limit: '1' });
    const asc = await page({ limit: '1' });
    expect(desc.nextCursor).toMatch(/^d[0-9]+$/);
    expect(asc.nextCursor).toMatch(/^[0-9]+$/);
    const wrong = [
      [desc.nextCursor!, 'asc', /order=desc list, not order=asc/],
      [asc.nextCursor!, 'desc', /order=asc list, not order=desc/],
    ] as const;
    for (const [cursor, order, message] of wrong) {
      const res = await t.http.get('/v1/jobs').query({ order, cursor }).set(AUTH);
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
      expect(JSON.stringify(res.body)).toMatch(message);
      expect(JSON.stringify(res.body)).toContain('cursor');
    }
  });
});
