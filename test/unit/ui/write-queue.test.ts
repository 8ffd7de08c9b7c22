import { describe, expect, it } from 'vitest';
import { ChunkHistory, WriteQueue } from '../../../ui/src/write-queue.js';

const dec = new TextDecoder();
const enc = new TextEncoder();

function harness(batch = 8, max = 32) {
  const writes: string[] = [];
  let pendingDone: (() => void) | null = null;
  const frames: (() => void)[] = [];
  const q = new WriteQueue(
    (data, done) => {
      writes.push(dec.decode(data));
      pendingDone = done;
    },
    (cb) => frames.push(cb),
    batch,
    max,
    (n) => enc.encode(`[${n} skipped]`),
  );
  const frame = () => frames.splice(0).forEach((f) => f());
  const finish = () => {
    const d = pendingDone;
    pendingDone = null;
    d?.();
  };
  return { q, writes, frame, finish, inFlight: () => pendingDone !== null };
}

describe('WriteQueue: bounded batches, one write in flight', () => {
  it('writes nothing until a frame, at most a batch at a time, and the next only when the last is done', () => {
    const h = harness(8);
    h.q.push(enc.encode('0123456789'));
    h.q.push(enc.encode('abc'));
    expect(h.writes).toEqual([]);
    h.frame();
    expect(h.writes).toEqual(['01234567']);
    h.frame();
    expect(h.writes).toHaveLength(1); // still in flight
    h.finish();
    h.frame();
    expect(h.writes).toEqual(['01234567', '89abc']);
    expect(h.q.pending).toBe(0);
  });

  it('past maxPending it drops the oldest queued bytes and says so before the rest', () => {
    const h = harness(100, 10);
    for (const s of ['aaaa', 'bbbb', 'cccc', 'dddd']) h.q.push(enc.encode(s));
    expect(h.q.skipped).toBe(8);
    expect(h.q.pending).toBe(8);
    h.frame();
    expect(h.writes).toEqual(['[8 skipped]ccccdddd']);
  });

  it('clear forgets what is queued', () => {
    const h = harness();
    h.q.push(enc.encode('xyz'));
    h.q.clear();
    h.frame();
    expect(h.writes).toEqual([]);
  });
});

it('ChunkHistory keeps the last maxBytes, in order, with their streams', () => {
  const h = new ChunkHistory(6);
  h.push('stdout', enc.encode('abc'));
  h.push('stderr', enc.encode('de'));
  h.push('stdout', enc.encode('fgh'));
  expect(h.entries().map(([s, b]) => `${s}:${dec.decode(b)}`)).toEqual(['stderr:de', 'stdout:fgh']);
});
