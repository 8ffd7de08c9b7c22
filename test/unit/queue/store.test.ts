import { describe, expect, it } from 'vitest';
import { newJobRecord, transition } from '../../../src/queue/job.js';
import { JobStore, type StoredJob } from '../../../src/queue/store.js';

let seq = 0;
const make = (key?: string): StoredJob => ({
  ...newJobRecord(`job-${++seq}`, seq, 'default', { argv: ['true'] }),
  retainTicket: null,
  removed: false,
  idempotency: key ? { key, digest: 'd' } : null,
});
const finish = (store: JobStore<StoredJob>, job: StoredJob, at = Date.now()) => {
  transition(job, 'running', {}, at);
  transition(job, 'succeeded', {}, at);
  store.finish(job);
};

describe('JobStore', () => {
  it('keeps at most retainJobs finished jobs, dropping the oldest-finished, and never a queued one', () => {
    const removed: string[] = [];
    const store = new JobStore<StoredJob>({ retainJobs: 2, retainMs: 1e9, onRemove: (j) => removed.push(j.id) });
    const [a, b, c, d] = [make('k1'), make(), make(), make()];
    [a, b, c, d].forEach((j) => store.add(j!));
    finish(store, b!);
    finish(store, a!);
    finish(store, c!);
    expect(removed).toEqual([b!.id]);
    expect(store.get(b!.id)).toBeUndefined();
    expect(store.get(d!.id)?.state).toBe('queued');
    expect(store.byIdempotencyKey(null, 'k1')).toBe(a);
    finish(store, d!);
    expect(removed).toEqual([b!.id, a!.id]);
    expect(store.byIdempotencyKey(null, 'k1')).toBeUndefined();
    store.clear();
  });

  it('removes finished jobs older than retainMs', () => {
    const removed: string[] = [];
    const store = new JobStore<StoredJob>({ retainJobs: 100, retainMs: 1000, onRemove: (j) => removed.push(j.id) });
    const [a, b] = [make(), make()];
    store.add(a!);
    store.add(b!);
    finish(store, a!, 10_000);
    finish(store, b!, 10_500);
    expect(store.sweep(10_999)).toBe(0);
    expect(store.sweep(11_000)).toBe(1);
    expect(removed).toEqual([a!.id]);
    expect(store.sweep(11_600)).toBe(1);
    expect(store.size).toBe(0);
    store.clear();
  });

  it('sweeps by itself on a timer', async () => {
    const removed: string[] = [];
    const store = new JobStore<StoredJob>({ retainJobs: 100, retainMs: 30, onRemove: (j) => removed.push(j.id) });
    const a = make();
    store.add(a);
    finish(store, a);
    await new Promise((r) => setTimeout(r, 80));
    expect(removed).toEqual([a.id]);
  });

  it('pages by cursor: every job kept throughout appears exactly once while jobs come and go', () => {
    const store = new JobStore<StoredJob>({ retainJobs: 1e6, retainMs: 1e9, onRemove: () => {} });
    const jobs = [...Array(50)].map(() => make());
    jobs.forEach((j) => store.add(j));
    const seen: string[] = [];
    let after = 0;
    for (let page = 0; ; page++) {
      const { items, more } = store.list({}, after, 7);
      seen.push(...items.map((j) => j.id));
      // churn: remove an old job already seen, add new ones
      if (page < 5) {
        const gone = jobs[page * 3]!;
        finish(store, gone);
        store.remove(gone);
        const fresh = make();
        jobs.push(fresh);
        store.add(fresh);
      }
      if (!more) break;
      after = items.at(-1)!.seq;
    }
    expect(new Set(seen).size).toBe(seen.length);
    const alive = jobs.filter((j) => !j.removed).map((j) => j.id);
    for (const id of alive) expect(seen).toContain(id);
  });

  it('filters by state and queue', () => {
    const store = new JobStore<StoredJob>({ retainJobs: 100, retainMs: 1e9, onRemove: () => {} });
    const [a, b, c] = [make(), make(), make()];
    [a, b, c].forEach((j) => store.add(j!));
    finish(store, b!);
    expect(store.list({ state: 'queued' }, 0, 10).items.map((j) => j.id)).toEqual([a!.id, c!.id]);
    expect(store.list({ state: 'succeeded', queue: 'default' }, 0, 10).items).toEqual([b]);
    expect(store.list({ queue: 'other' }, 0, 10).items).toEqual([]);
    expect(store.list({}, 0, 2)).toMatchObject({ more: true });
    store.clear();
  });
});
