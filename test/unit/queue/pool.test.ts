import { describe, expect, it } from 'vitest';
import { WorkerPool } from '../../../src/queue/pool.js';
import { waitFor } from '../../helpers/proc.js';

describe('WorkerPool', () => {
  it('never runs more than its concurrency, and uses all of it', async () => {
    const items = [...Array(30).keys()];
    let active = 0;
    let peak = 0;
    const done: number[] = [];
    const pool = new WorkerPool<number>(
      4,
      () => items.shift(),
      async (i) => {
        active++;
        peak = Math.max(peak, active);
        await new Promise((r) => setTimeout(r, 2));
        active--;
        done.push(i);
      },
    );
    pool.kick();
    await waitFor(() => done.length === 30);
    expect(peak).toBe(4);
    expect(pool.running).toBe(0);
  });

  it('takes the next job on a later turn of the event loop, never inside the previous completion', async () => {
    let turn = 0;
    let ticking = true;
    const tick = () => {
      turn++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const turns: number[] = [];
    let left = 200;
    const pool = new WorkerPool<number>(
      1,
      () => (left > 0 ? left-- : undefined),
      async () => {
        turns.push(turn);
      },
    );
    pool.kick();
    await waitFor(() => turns.length === 200);
    ticking = false;
    for (let i = 1; i < turns.length; i++) expect(turns[i]).toBeGreaterThan(turns[i - 1]!);
  });

  it('stop takes no more jobs and resolves once the running ones finish', async () => {
    let release: () => void = () => {};
    const items = [1, 2, 3];
    const started: number[] = [];
    const pool = new WorkerPool<number>(
      1,
      () => items.shift(),
      (i) => {
        started.push(i);
        return new Promise<void>((r) => (release = r));
      },
    );
    pool.kick();
    await waitFor(() => started.length === 1);
    let stopped = false;
    void pool.stop().then(() => (stopped = true));
    await new Promise((r) => setImmediate(r));
    expect(stopped).toBe(false);
    release();
    await waitFor(() => stopped);
    await new Promise((r) => setTimeout(r, 10));
    expect(started).toEqual([1]);
  });
});
