import { describe, expect, it } from 'vitest';
import { Fifo } from '../../../src/queue/fifo.js';

describe('Fifo', () => {
  it('gives items back in the order they were pushed, across growth and wrap-around', () => {
    const q = new Fifo<number>();
    const out: number[] = [];
    let next = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 37; i++) q.push(next++);
      for (let i = 0; i < 30; i++) out.push(q.shift()!);
    }
    while (q.size > 0) out.push(q.shift()!);
    expect(out).toEqual([...Array(next).keys()]);
    expect(q.shift()).toBeUndefined();
  });

  it('refuses past its capacity, and takes again once an item left', () => {
    const q = new Fifo<string>(2);
    q.push('a');
    q.push('b');
    expect(q.full).toBe(true);
    expect(() => q.push('c')).toThrow(RangeError);
    expect(q.shift()).toBe('a');
    q.push('c');
    expect([...q]).toEqual(['b', 'c']);
  });

  it('removes by ticket (a canceled job) and skips the hole; a removed item no longer counts against capacity', () => {
    const q = new Fifo<string>(3);
    const t = ['a', 'b', 'c'].map((x) => q.push(x));
    expect(q.remove(t[1]!)).toBe('b');
    expect(q.remove(t[1]!)).toBeUndefined();
    expect(q.size).toBe(2);
    q.push('d');
    expect(q.positionOf(t[2]!)).toBe(1);
    expect([q.shift(), q.shift(), q.shift(), q.shift()]).toEqual(['a', 'c', 'd', undefined]);
  });

  it('knows each item position, holes or not', () => {
    const q = new Fifo<number>();
    const tickets = [...Array(10).keys()].map((i) => q.push(i));
    expect(tickets.map((t) => q.positionOf(t))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    q.remove(tickets[3]!);
    q.shift();
    expect(q.positionOf(tickets[4]!)).toBe(2);
    expect(q.positionOf(tickets[0]!)).toBeUndefined();
    expect(q.positionOf(tickets[3]!)).toBeUndefined();
  });

  it('compacts when holes outnumber items, handing out new increasing tickets', () => {
    const moved = new Map<number, number>();
    const q = new Fifo<number>(Number.POSITIVE_INFINITY, (item, ticket) => moved.set(item, ticket));
    const tickets = [...Array(1000).keys()].map((i) => q.push(i));
    const ticketOf = (i: number) => moved.get(i) ?? tickets[i]!;
    for (let i = 1; i < 999; i++) if (i % 10 !== 0) expect(q.remove(ticketOf(i))).toBe(i);
    expect(moved.size).toBeGreaterThan(0);
    const kept = [...q];
    expect(kept).toEqual([...Array(1000).keys()].filter((i) => i === 0 || i === 999 || i % 10 === 0));
    kept.forEach((item, pos) => expect(q.positionOf(ticketOf(item))).toBe(pos));
    expect(q.remove(ticketOf(500))).toBe(500);
    expect(q.shift()).toBe(0);
  });

  it('stays O(1): a million pushes and shifts on a long queue take well under a second', () => {
    const q = new Fifo<number>();
    for (let i = 0; i < 100_000; i++) q.push(i);
    const t0 = performance.now();
    for (let i = 0; i < 1_000_000; i++) {
      q.push(i);
      q.shift();
    }
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(q.size).toBe(100_000);
  });

  it('drains everything at once, oldest first', () => {
    const q = new Fifo<number>(5);
    [1, 2, 3].forEach((i) => q.push(i));
    expect(q.drain()).toEqual([1, 2, 3]);
    expect(q.size).toBe(0);
    q.push(4);
    expect(q.shift()).toBe(4);
  });
});
