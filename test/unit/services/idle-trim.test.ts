import v8 from 'node:v8';
import { describe, expect, it } from 'vitest';
import { loadAddon } from '../../../src/runner/native-addon.js';
import { startIdleTrim, type IdleTrimInfo } from '../../../src/services/idle-trim.js';

type Trim = IdleTrimInfo;

/** Garbage: 40 MiB of short-lived objects, so that the heap grows past what is live. */
function churn(): number {
  let n = 0;
  for (let i = 0; i < 200; i++) n += Array.from({ length: 5_000 }, (_, k) => ({ k, s: `x${k}` })).length;
  return n;
}

describe('idle trim (services/idle-trim.ts)', () => {
  it('at rest, gives back the heap garbage grew it to, and only then', async () => {
    const trims: Trim[] = [];
    churn();
    const stop = startIdleTrim({ intervalMs: 100, idleCpuMs: 1_000_000, growthBytes: 0, onTrim: (t) => trims.push(t) });
    try {
      await new Promise((r) => setTimeout(r, 350));
    } finally {
      stop();
    }
    expect(trims.length).toBeGreaterThan(0);
    expect(trims[0]!.heapAfter).toBeLessThan(trims[0]!.heapBefore);
  });

  it('the collection drops the code of a function that was hot (its baseline code, which V8 by itself keeps)', async () => {
    // ~1 MiB of bytecode, run until V8 gave it baseline code: V8's own flushing would keep both for good.
    const body = Array.from({ length: 20_000 }, (_, i) => `s = (s + x * ${i}) % 1000003;`).join('\n');
    const hot = new Function('x', `let s = 0;\n${body}\nreturn s;`) as (x: number) => number;
    for (let i = 0; i < 300; i++) hot(i);
    const code = () => v8.getHeapCodeStatistics().code_and_metadata_size;
    const before = code();
    const trims: Trim[] = [];
    const onTrim = (t: Trim) => trims.push(t);
    const stop = startIdleTrim({ intervalMs: 50, idleCpuMs: 1_000_000, growthBytes: 0, onTrim, afterStart: true, restMs: 0 });
    try {
      for (let i = 0; i < 40 && !trims.some((t) => t.collected); i++) await new Promise((r) => setTimeout(r, 50));
    } finally {
      stop();
    }
    expect(trims.some((t) => t.collected)).toBe(true);
    expect(before - code()).toBeGreaterThan(512 * 1024); // ~1.3 MiB; without the flag ~0
    expect(hot(2)).toBe(hot(2)); // compiled again at its next call
  });

  it('a busy process is never trimmed, nor one whose heap has not grown', async () => {
    const trims: Trim[] = [];
    // idleCpuMs -1: any CPU in the interval counts as busy.
    const busy = startIdleTrim({ intervalMs: 50, idleCpuMs: -1, growthBytes: 0, onTrim: (t) => trims.push(t) });
    await new Promise((r) => setTimeout(r, 200));
    busy();
    expect(trims).toEqual([]);
    const grown = startIdleTrim({ intervalMs: 50, idleCpuMs: 1_000_000, growthBytes: 2 ** 40, onTrim: (t) => trims.push(t) });
    await new Promise((r) => setTimeout(r, 200));
    grown();
    expect(trims).toEqual([]);
  });

  it('after start-up, the first idle interval trims whatever the growth, and only that one', async () => {
    const trims: Trim[] = [];
    let mallocTrims = 0;
    const stop = startIdleTrim({
      intervalMs: 50,
      idleCpuMs: 1_000_000,
      growthBytes: 2 ** 40,
      afterStart: true,
      trimMalloc: () => ++mallocTrims > 0,
      onTrim: (t) => trims.push(t),
    });
    await new Promise((r) => setTimeout(r, 300));
    stop();
    expect(trims.length).toBe(1);
    expect(mallocTrims).toBe(1);
    expect(trims[0]!.mallocTrimmed).toBe(true);
  });

  it('the start-up\'s trim comes once, right after the start, even when the server is busy at once; a burst then waits for restMs', async () => {
    const trims: Trim[] = [];
    const stop = startIdleTrim({
      intervalMs: 100,
      idleCpuMs: 30,
      growthBytes: 0,
      afterStart: true,
      restMs: 60_000,
      trimMalloc: () => true,
      onTrim: (t) => trims.push(t),
    });
    try {
      const t0 = performance.now();
      while (performance.now() - t0 < 250); // busy from the start
      await new Promise((r) => setTimeout(r, 450));
    } finally {
      stop();
    }
    expect(trims.map((t) => t.collected)).toEqual([true]); // the start-up's; the burst's waits for 60 s of rest
  });

  it.runIf(loadAddon() !== null)('gives the C heap\'s free pages back (malloc_trim through the native addon)', async () => {
    // 64 MiB of malloc'd 32 KiB blocks (under glibc's mmap threshold), every other one freed: holes that free() keeps.
    const blocks: (Buffer | null)[] = Array.from({ length: 2048 }, () => Buffer.allocUnsafeSlow(32 * 1024).fill(1));
    for (let i = 0; i < blocks.length; i += 2) blocks[i] = null;
    const trims: Trim[] = [];
    const options = { intervalMs: 100, idleCpuMs: 1_000_000, growthBytes: 2 ** 40, afterStart: true };
    const stop = startIdleTrim({ ...options, onTrim: (t) => trims.push(t) });
    try {
      await new Promise((r) => setTimeout(r, 250));
    } finally {
      stop();
    }
    expect(trims.length).toBe(1);
    expect(trims[0]!.mallocTrimmed).toBe(true);
    // The 32 MiB of holes went back (the kept half stays: it is live).
    expect(trims[0]!.rssBefore - trims[0]!.rssAfter).toBeGreaterThan(16 * 2 ** 20);
    expect(blocks.filter(Boolean).length).toBe(1024);
  });

  it('after a busy spell nothing is trimmed until the server has rested restMs in a row; then the collection and the C heap', async () => {
    const trims: Array<{ collected: boolean; mallocTrimmed: boolean; at: number }> = [];
    const stop = startIdleTrim({
      intervalMs: 100,
      idleCpuMs: 30,
      growthBytes: 0,
      restMs: 500,
      trimMalloc: () => true,
      onTrim: (t) => trims.push({ collected: t.collected, mallocTrimmed: t.mallocTrimmed, at: performance.now() }),
    });
    const t0 = performance.now();
    while (performance.now() - t0 < 150); // busy: 150 ms of CPU
    const restStarted = performance.now();
    try {
      for (const t1 = performance.now(); trims.length === 0 && performance.now() - t1 < 5000; ) await new Promise((r) => setTimeout(r, 20));
    } finally {
      stop();
    }
    expect(trims.length).toBe(1);
    expect(trims[0]).toMatchObject({ collected: true, mallocTrimmed: true });
    expect(trims[0]!.at - restStarted).toBeGreaterThanOrEqual(450); // 500 ms of rest (five looks), not the first idle one
  });

  it('an idle interval after a busy one gives the C heap back, without a collection when the heap did not grow', async () => {
    const trims: Trim[] = [];
    let mallocTrims = 0;
    const stop = startIdleTrim({
      intervalMs: 100,
      idleCpuMs: 30,
      growthBytes: 2 ** 40,
      trimMalloc: () => ++mallocTrims > 0,
      onTrim: (t) => trims.push(t),
    });
    try {
      await new Promise((r) => setTimeout(r, 250));
      expect(trims).toEqual([]); // idle, not grown, not busy: nothing
      const t0 = performance.now();
      while (performance.now() - t0 < 150); // busy: 150 ms of CPU
      await new Promise((r) => setTimeout(r, 450));
    } finally {
      stop();
    }
    expect(mallocTrims).toBe(1);
    expect(trims.length).toBe(1);
    expect(trims[0]!.ms).toBeLessThan(50); // no full collection
  });
  it('tells each look: busy (more CPU than idleCpuMs in the interval) or idle', async () => {
    const looks: string[] = [];
    const busy = startIdleTrim({ intervalMs: 40, idleCpuMs: -1, growthBytes: 2 ** 40, onBusy: () => looks.push('busy'), onIdle: () => looks.push('idle') });
    await new Promise((r) => setTimeout(r, 150));
    busy();
    expect(looks.length).toBeGreaterThan(0);
    expect(new Set(looks)).toEqual(new Set(['busy']));
    looks.length = 0;
    const idle = startIdleTrim({ intervalMs: 40, idleCpuMs: 1_000_000, growthBytes: 2 ** 40, onBusy: () => looks.push('busy'), onIdle: () => looks.push('idle') });
    await new Promise((r) => setTimeout(r, 150));
    idle();
    expect(looks.length).toBeGreaterThan(0);
    expect(new Set(looks)).toEqual(new Set(['idle']));
  });
  it('a quiet look (nothing happened since the last one) is idle whatever the CPU; a look that is not quiet goes by the CPU', async () => {
    const looks: string[] = [];
    let quiet = true;
    const stop = startIdleTrim({ intervalMs: 40, idleCpuMs: -1, growthBytes: 2 ** 40, quiet: () => quiet, onBusy: () => looks.push('busy'), onIdle: () => looks.push('idle') });
    await new Promise((r) => setTimeout(r, 150));
    expect(looks.length).toBeGreaterThan(0);
    expect(new Set(looks)).toEqual(new Set(['idle']));
    quiet = false;
    looks.length = 0;
    await new Promise((r) => setTimeout(r, 150));
    stop();
    expect(looks.length).toBeGreaterThan(0);
    expect(new Set(looks)).toEqual(new Set(['busy']));
  });
});
