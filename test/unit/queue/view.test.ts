import { describe, expect, it } from 'vitest';
import { newJobId } from '../../../src/queue/id.js';
import { newJobRecord, transition } from '../../../src/queue/job.js';
import { toJobView } from '../../../src/queue/view.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const view = (createdAt: number) => toJobView(newJobRecord('j', 1, 'default', { argv: ['true'] }, createdAt), null, { stdout: 0, stderr: 0 });

describe('newJobId', () => {
  it('gives random v4 UUIDs, distinct, across refills of its random pool', () => {
    const ids = Array.from({ length: 5000 }, () => newJobId());
    for (const id of ids) expect(id).toMatch(UUID_V4);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

describe('toJobView time stamps', () => {
  it('are what Date#toISOString gives, within a second, across seconds, and at the edges', () => {
    const times = [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 1_765_058_845_000, 1_765_058_845_009, 1_765_058_845_999, 1_765_058_846_000];
    times.push(253_402_300_799_999, 253_402_300_800_000, 253_402_300_800_001, 0, -1, -1001, 1, 1.5);
    times.push(1_765_058_845_000, 1_765_058_845_000.25, -0); // a fractional or negative time in a second the cache holds
    for (let i = 0; i < 2000; i++) {
      times.push(1_765_058_845_000 + Math.floor(Math.random() * 3000), Math.floor(Math.random() * 253_402_300_800_000));
    }
    for (const ms of times) expect(view(ms).createdAt).toBe(new Date(ms).toISOString());
  });

  it('format startedAt and finishedAt alike', () => {
    const job = newJobRecord('j', 1, 'default', { argv: ['true'] }, 1_765_058_845_123);
    transition(job, 'running', {}, 1_765_058_845_200);
    transition(job, 'succeeded', {}, 1_765_058_846_007);
    const v = toJobView(job, null, { stdout: 0, stderr: 0 });
    expect([v.createdAt, v.startedAt, v.finishedAt]).toEqual(['2025-12-06T22:07:25.123Z', '2025-12-06T22:07:25.200Z', '2025-12-06T22:07:26.007Z']);
  });
});
