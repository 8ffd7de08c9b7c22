import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EMPTY_FINISHED_OUTPUT, isEmptyFinished } from '../../../src/queue/finished-output.js';
import { JobOutput, type JobOutputReader } from '../../../src/queue/job-output.js';
import type { LogEvent } from '../../../src/queue/log-subscription.js';
import { waitFor } from '../../helpers/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'execd-finished-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const newOutput = () => new JobOutput({ dir, jobId: `job-${n++}`, memoryBytes: 1024, maxBytes: 4 });

/** What a reader sees of one stream: the answers, the reads, the snapshot and a subscription's events. */
async function observe(output: JobOutputReader, from: number) {
  const events: LogEvent[] = [];
  output.subscribe('stdout', from, (e) => events.push(e));
  await waitFor(() => events.length > 0);
  const snap = await output.snapshot('stdout');
  const past = await output.read('stdout', 1, 10).then(
    () => 'read',
    (err: Error) => err.name,
  );
  return {
    end: output.end('stdout'),
    closed: output.closed('stdout'),
    truncated: output.truncated('stderr'),
    reason: output.truncatedReason('stderr'),
    read: (await output.read('stdout', 0, 10)).length,
    past,
    snapshot: { end: snap.end, bytes: (await snap.read(0, 10)).length },
    events: events.map((e) => (e.type === 'error' ? { type: 'error', name: e.error.name } : e)),
  };
}

describe('EMPTY_FINISHED_OUTPUT', () => {
  it('answers as a closed JobOutput without a byte does: reads, snapshot, subscriptions from 0 and past the end', async () => {
    for (const from of [0, 3]) {
      const real = newOutput();
      real.close();
      expect(await observe(EMPTY_FINISHED_OUTPUT, from)).toEqual(await observe(real, from));
      real.dispose();
    }
    const seen = await observe(EMPTY_FINISHED_OUTPUT, 0);
    expect(seen).toMatchObject({ end: 0, closed: true, truncated: false, reason: null, past: 'RangeError' });
    expect(seen.events).toEqual([{ type: 'end', end: 0, truncated: false, dropped: 0 }]);
  });

  it('stands only for outputs that are closed, empty and lost nothing', () => {
    const open = newOutput();
    expect(isEmptyFinished(open)).toBe(false); // still open: bytes may come
    open.close();
    expect(isEmptyFinished(open)).toBe(true);
    const wrote = newOutput();
    wrote.write('stderr', Buffer.from('x'));
    wrote.close();
    expect(isEmptyFinished(wrote)).toBe(false);
    const capped = new JobOutput({ dir, jobId: `job-${n++}`, memoryBytes: 1024, maxBytes: 0 });
    capped.write('stdout', Buffer.from('dropped'));
    capped.close();
    expect(capped.end('stdout')).toBe(0);
    expect(isEmptyFinished(capped)).toBe(false); // truncated: its record says so, the empty one would not
    for (const o of [open, wrote, capped]) o.dispose();
  });
});
