import { describe, expect, it } from 'vitest';
import { hasLabels, maxAttempts, retryDelay } from '../../../src/queue/retry.js';
import type { CommandSpec } from '../../../src/schemas/run.js';

const spec = (extra: object): CommandSpec => ({ argv: ['true'], ...extra }) as CommandSpec;

describe('retryDelay', () => {
  it('is null without a retry, once attempts are spent, for outcomes not listed, a cancel or a shutdown', () => {
    expect(retryDelay(spec({}), 1, 'failed', null)).toBeNull();
    const s = spec({ retry: { attempts: 3 } });
    expect(retryDelay(s, 3, 'failed', null)).toBeNull();
    expect(retryDelay(s, 1, 'lost', null)).toBeNull(); // lost only when listed
    expect(retryDelay(s, 1, 'canceled', null)).toBeNull();
    expect(retryDelay(s, 1, 'succeeded', null)).toBeNull();
    expect(retryDelay(s, 1, 'failed', { code: 'SHUTTING_DOWN', message: 'x' })).toBeNull();
    expect(retryDelay(spec({ retry: { attempts: 3, on: ['lost'] } }), 1, 'failed', null)).toBeNull();
    expect(retryDelay(spec({ retry: { attempts: 3, on: ['lost'] } }), 1, 'lost', null)).toBe(1000);
  });

  it('exponential by default from 1000 ms, fixed when asked, capped at an hour', () => {
    const s = spec({ retry: { attempts: 50 } });
    expect([1, 2, 3, 4].map((n) => retryDelay(s, n, 'timed_out', null))).toEqual([1000, 2000, 4000, 8000]);
    const f = spec({ retry: { attempts: 5, backoffMs: 250, backoff: 'fixed' } });
    expect([1, 2, 3].map((n) => retryDelay(f, n, 'failed', null))).toEqual([250, 250, 250]);
    expect(retryDelay(s, 40, 'failed', null)).toBe(3_600_000);
    expect(retryDelay(spec({ retry: { attempts: 2, backoffMs: 0 } }), 1, 'failed', null)).toBe(0);
  });

  it('maxAttempts and labels', () => {
    expect(maxAttempts(spec({}))).toBe(1);
    expect(maxAttempts(spec({ retry: { attempts: 4 } }))).toBe(4);
    const l = spec({ labels: { team: 'web', build: '1' } });
    expect(hasLabels(l, [['team', 'web']])).toBe(true);
    expect(hasLabels(l, [['team', 'web'], ['build', '2']])).toBe(false);
    expect(hasLabels(l, [['constructor', '']])).toBe(false);
    expect(hasLabels(spec({}), [])).toBe(true);
  });
});
