import { describe, expect, it } from 'vitest';
import { startIdleTrim } from '../../../src/services/idle-trim.js';

type Trim = { heapBefore: number; heapAfter: number; rssBefore: number; rssAfter: number; ms: number };

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
});
