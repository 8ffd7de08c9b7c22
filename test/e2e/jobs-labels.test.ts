import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { AUTH, type TestApp } from '../helpers/app.js';
import { settle, startJobsApp, submit } from '../helpers/jobs.js';
import { connect, refusal, type Frame } from '../helpers/stream.js';

let t: TestApp;
beforeAll(async () => {
  t = await startJobsApp();
});
afterAll(async () => {
  await t.close();
});

const ids = (body: { items: Job[] }) => body.items.map((j) => j.id);

describe('labels', () => {
  it('are shown in the Job ({} without), and filter GET /v1/jobs (ANDed) across cursor pages', async () => {
    const plain = await submit(t, { command: 'true' });
    expect(plain.labels).toEqual({});
    const web: string[] = [];
    const other: string[] = [];
    for (let i = 0; i < 5; i++) {
      web.push((await submit(t, { command: 'true', labels: { team: 'web', build: String(i % 2), 'app.kubernetes.io/name': 'x' } })).id);
      other.push((await submit(t, { command: 'true', labels: { team: 'db' } })).id);
    }
    const one = await t.http.get(`/v1/jobs/${web[0]}`).set(AUTH);
    expect(one.body.labels).toEqual({ team: 'web', build: '0', 'app.kubernetes.io/name': 'x' });
    // pages of 2 with the cursor: every web job exactly once, no other
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const res: { status: number; body: { items: Job[]; nextCursor: string | null } } = await t.http.get(`/v1/jobs?label=team=web&limit=2${cursor ? `&cursor=${cursor}` : ''}`).set(AUTH);
      expect(res.status).toBe(200);
      seen.push(...ids(res.body));
      cursor = res.body.nextCursor;
      if (!cursor) break;
    }
    expect(seen).toEqual(web);
    const both = await t.http.get('/v1/jobs?label=team=web&label=build=1').set(AUTH);
    expect(ids(both.body)).toEqual([web[1], web[3]]);
    const none = await t.http.get('/v1/jobs?label=team=web&label=team=db').set(AUTH);
    expect(none.body.items).toEqual([]);
    const byState = await t.http.get('/v1/jobs?label=team=db&state=succeeded').set(AUTH);
    for (const id of other) await settle(t, id);
    const settled = await t.http.get('/v1/jobs?label=team=db&state=succeeded').set(AUTH);
    expect(ids(settled.body)).toEqual(other);
    expect(byState.status).toBe(200);
    // a value with "=" in it: split at the first "="
    const eq = await submit(t, { command: 'true', labels: { expr: 'a=b' } });
    expect(ids((await t.http.get('/v1/jobs?label=expr=a%3Db').set(AUTH)).body)).toEqual([eq.id]);
  });

  it('are bounded: bad keys, long values, too many, control characters, bad filters are 400', async () => {
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    for (const labels of [{ Team: 'x' }, { '': 'x' }, { 'a b': 'x' }, { ['k'.repeat(64)]: 'x' }, { k: 'v'.repeat(257) }, many, { k: 'a\nb' }, { k: 1 }]) {
      const res = await t.http.post('/v1/jobs').set(AUTH).send({ command: 'true', labels });
      expect(res.status, JSON.stringify(labels).slice(0, 80)).toBe(400);
    }
    for (const q of ['label=team', 'label==web', 'label=Team=web']) {
      const res = await t.http.get(`/v1/jobs?${q}`).set(AUTH);
      expect(res.status, q).toBe(400);
    }
    const ok = await t.http.post('/v1/jobs').set(AUTH).send({ command: 'true', labels: { ['k'.repeat(63)]: 'v'.repeat(256) } });
    expect(ok.status).toBe(202);
  });

  it('filter /v1/events: only the events of jobs with every label asked for', async () => {
    const web = await connect(t, '/v1/events?label=team=web');
    const both = await connect(t, '/v1/events?label=team=web&label=build=7');
    const all = await connect(t, '/v1/events');
    const a = await submit(t, { command: 'true', labels: { team: 'web', build: '7' } });
    const b = await submit(t, { command: 'true', labels: { team: 'web' } });
    const c = await submit(t, { command: 'true', labels: { team: 'db', build: '7' } });
    const finished = (id: string) => (f: Frame) => f.type === 'finished' && (f.job as Job).id === id;
    for (const j of [a, b, c]) await all.next(finished(j.id)); // in order: a viewer has every event it would get of a, b, c
    await web.next(finished(b.id));
    await both.next(finished(a.id));
    await new Promise((r) => setTimeout(r, 100));
    const seen = (cl: { frames: Frame[] }) => [...new Set(cl.frames.filter((f) => f.job).map((f) => (f.job as Job).id))];
    expect(seen(web)).toEqual([a.id, b.id]);
    expect(seen(both)).toEqual([a.id]);
    expect(seen(all)).toEqual(expect.arrayContaining([a.id, b.id, c.id])); // (and any job of the test before that still ran)
    for (const j of [a, b]) {
      expect(web.frames.filter((f) => f.job && (f.job as Job).id === j.id).map((f) => f.type)).toEqual(['queued', 'started', 'finished']);
    }
    for (const cl of [web, both, all]) cl.ws.close();
    expect((await refusal(t, '/v1/events?label=nokey')).status).toBe(400);
  });
});
