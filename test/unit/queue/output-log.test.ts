import { existsSync, lstatSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { FINISHED_MEMORY_BYTES, OutputLog } from '../../../src/queue/output-log.js';
import type { LogEvent } from '../../../src/queue/log-subscription.js';
import { waitFor } from '../../helpers/proc.js';

const dir = mkdtempSync(join(tmpdir(), 'execd-log-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const newLog = (memoryBytes: number, maxBytes = 1 << 30) => {
  const file = join(dir, `log-${n++}`);
  return { log: new OutputLog({ file, memoryBytes, maxBytes }), file };
};
const b = (s: string) => Buffer.from(s);

/** Collect a subscription's events as text. */
function collect(log: OutputLog, from: number) {
  const events: LogEvent[] = [];
  const sub = log.subscribe(from, (e) => events.push(e));
  const text = () => events.flatMap((e) => (e.type === 'data' ? [e.data.toString()] : [])).join('');
  const ended = () => events.some((e) => e.type === 'end');
  return { events, sub, text, ended };
}

describe('OutputLog', () => {
  it('keeps bytes at absolute offsets in memory and reads any range', async () => {
    const { log, file } = newLog(1024);
    ['hello ', 'wor', 'ld', '!'].forEach((s) => log.append(b(s)));
    expect(log.end).toBe(12);
    expect((await log.read(0, 100)).toString()).toBe('hello world!');
    expect((await log.read(4, 5)).toString()).toBe('o wor');
    expect((await log.read(12, 5)).length).toBe(0);
    await expect(log.read(13, 1)).rejects.toThrow(RangeError);
    expect(log.onDisk).toBe(false);
    expect(existsSync(file)).toBe(false);
  });

  it('spills to its file past the memory bound and reads across the boundary exactly', async () => {
    const { log, file } = newLog(10);
    const all = 'abcdefghijklmnopqrstuvwxyz0123456789';
    for (let i = 0; i < all.length; i += 7) log.append(b(all.slice(i, i + 7)));
    expect(log.onDisk).toBe(true);
    expect(readFileSync(file, 'utf8')).toBe(all);
    for (const [o, l] of [[0, 36], [5, 10], [9, 2], [30, 100]] as const) {
      expect((await log.read(o, l)).toString()).toBe(all.slice(o, o + l));
    }
    log.dispose();
    expect(existsSync(file)).toBe(false);
    await expect(log.read(0, 1)).rejects.toThrow(/removed/);
  });

  it('a snapshot reads to its end after the log is removed (memory and file); none is taken once it is', async () => {
    for (const memoryBytes of [1024, 4]) {
      const { log, file } = newLog(memoryBytes);
      ['hello ', 'world'].forEach((s) => log.append(b(s)));
      const snap = await log.snapshot();
      log.append(b('!')); // after the snapshot: not in it
      log.dispose();
      expect(existsSync(file)).toBe(false);
      expect(snap.end).toBe(11);
      expect((await snap.read(0, 100)).toString()).toBe('hello world');
      expect((await snap.read(6, 3)).toString()).toBe('wor');
      expect((await snap.read(11, 3)).length).toBe(0);
      await snap.close();
      await snap.close();
      await expect(log.snapshot()).rejects.toMatchObject({ name: 'OutputRemovedError' });
    }
  });

  it('keeps up to the cap, then counts and drops the rest (truncated)', async () => {
    const { log } = newLog(8, 20);
    for (let i = 0; i < 10; i++) log.append(b('0123456'));
    expect([log.end, log.dropped, log.truncated, log.truncatedReason]).toEqual([20, 50, true, 'max_output']);
    expect((await log.read(0, 100)).toString()).toBe('01234560123456012345');
  });

  it('moves a bigger-than-small finished log to disk when it closes, keeps a small one in memory', async () => {
    const small = newLog(1 << 20);
    small.log.append(b('tiny'));
    small.log.close();
    expect(small.log.onDisk).toBe(false);
    const big = newLog(1 << 20);
    const data = Buffer.alloc(FINISHED_MEMORY_BYTES + 1, 'x');
    big.log.append(data);
    big.log.close();
    expect(big.log.onDisk).toBe(true);
    expect(readFileSync(big.file).equals(data)).toBe(true);
    expect((await big.log.read(FINISHED_MEMORY_BYTES, 10)).toString()).toBe('x');
  });

  it('a failed spill keeps what it has and drops the rest instead of throwing into the writer', async () => {
    const blocker = join(dir, `not-a-dir-${n++}`);
    writeFileSync(blocker, '');
    const errors: Error[] = [];
    const log = new OutputLog({ file: join(blocker, 'out'), memoryBytes: 4, maxBytes: 100, onError: (e) => errors.push(e) });
    log.append(b('abc'));
    log.append(b('defgh'));
    log.append(b('ij'));
    expect(errors.length).toBe(1);
    expect([log.end, log.truncated, log.truncatedReason]).toEqual([3, true, 'write_failed']); // ENOTDIR: not a full disk
    expect((await log.read(0, 10)).toString()).toBe('abc');
  });

  it('a subscriber gets the kept bytes from its offset, then live ones, then end, without gaps or repeats', async () => {
    const { log } = newLog(16);
    log.append(b('0123456789'));
    log.append(b('abcdefghij'));
    const s = collect(log, 5);
    await waitFor(() => s.text().length === 15);
    log.append(b('KLM'));
    expect(s.text()).toBe('56789abcdefghijKLM');
    log.append(b('nop'));
    log.close();
    await waitFor(s.ended);
    expect(s.text()).toBe('56789abcdefghijKLMnop');
    expect(s.events.at(-1)).toEqual({ type: 'end', end: 26, truncated: false, dropped: 0 });
    const offsets = s.events.flatMap((e) => (e.type === 'data' ? [e.offset] : []));
    expect(offsets[0]).toBe(5);
  });

  it('pause holds delivery while the writer goes on; resume catches up from the log exactly', async () => {
    const { log } = newLog(1 << 20);
    const s = collect(log, 0);
    log.append(b('one '));
    s.sub.pause();
    for (let i = 0; i < 100; i++) log.append(b(`${i} `));
    expect(s.text()).toBe('one ');
    s.sub.resume();
    log.close();
    await waitFor(s.ended);
    expect(s.text()).toBe('one ' + [...Array(100).keys()].map((i) => `${i} `).join(''));
  });

  it('skip jumps a slow viewer to the end and names the gap', async () => {
    const { log } = newLog(1 << 20);
    log.append(b('abcdef'));
    const s = collect(log, 0);
    s.sub.pause();
    expect(s.sub.skip()).toEqual({ from: 0, to: 6 });
    s.sub.resume();
    log.append(b('XY'));
    log.close();
    await waitFor(s.ended);
    expect(s.text()).toBe('XY');
  });

  it('a subscriber past the end waits for those bytes', async () => {
    const { log } = newLog(1 << 20);
    const s = collect(log, 3);
    log.append(b('ab'));
    log.append(b('cdef'));
    log.close();
    await waitFor(s.ended);
    expect(s.text()).toBe('def');
  });

  it('a throwing listener cannot break the writer', () => {
    const { log } = newLog(1 << 20);
    log.subscribe(0, () => {
      throw new Error('viewer bug');
    });
    log.append(b('a'));
    log.append(b('b'));
    expect(log.end).toBe(2);
  });

  it('subscribers of a removed log get an error', async () => {
    const { log } = newLog(4);
    log.append(b('abcdefgh'));
    const s = collect(log, 0);
    s.sub.pause();
    log.dispose();
    await waitFor(() => s.events.length > 0);
    expect(s.events.at(-1)?.type).toBe('error');
  });
});

describe('OutputLog files', () => {
  it('are created O_EXCL|O_NOFOLLOW, mode 0600: a name already there fails the spill, and is left alone', async () => {
    const file = join(dir, `planted-${n++}`);
    const target = join(dir, `target-${n++}`);
    writeFileSync(target, 'unchanged');
    symlinkSync(target, file);
    const errors: Error[] = [];
    const log = new OutputLog({ file, memoryBytes: 4, maxBytes: 100, onError: (e) => errors.push(e) });
    log.append(b('abcdefgh'));
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['EEXIST']);
    expect([log.end, log.truncatedReason]).toEqual([0, 'write_failed']);
    log.dispose();
    expect(readFileSync(target, 'utf8')).toBe('unchanged');
    expect(lstatSync(file).isSymbolicLink()).toBe(true);

    const own = newLog(4);
    own.log.append(b('abcdefgh'));
    expect(statSync(own.file).mode & 0o777).toBe(0o600);
  });
});
