import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
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

/** Descriptors this process holds open on `file` now. */
function openFds(file: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === file) n++;
    } catch {
      // closed meanwhile
    }
  }
  return n;
}

describe('LogSubscription options (WebSocket viewers)', () => {
  it('batch: the live chunks of one turn are one event, delivered in that turn; a lone chunk too', async () => {
    const { log } = newLog(1 << 20);
    const events: LogEvent[] = [];
    log.subscribe(0, (e) => events.push(e), { batch: true });
    await new Promise((r) => setImmediate(r));
    log.append(b('ab'));
    log.append(b('cd'));
    log.append(b('e'));
    expect(events).toEqual([]);
    await new Promise((r) => setImmediate(r));
    expect(events).toEqual([{ type: 'data', offset: 0, data: b('abcde'), room: b('abcde') }]);
    log.append(b('f'));
    await new Promise((r) => setImmediate(r));
    expect(events.at(-1)).toEqual({ type: 'data', offset: 5, data: b('f') }); // one chunk: no copy
    log.close();
    expect(events.at(-1)).toEqual({ type: 'end', end: 6, truncated: false, dropped: 0 });
  });

  it('batch: a batch reaching chunkBytes goes at once, never more than chunkBytes (the rest from the log); pause gives the batched bytes back (delivered from the log on resume)', async () => {
    const { log } = newLog(1 << 20);
    const s = collect(log, 0);
    s.sub.close();
    const events: LogEvent[] = [];
    const sub = log.subscribe(0, (e) => events.push(e), { batch: true, chunkBytes: 4 });
    await new Promise((r) => setImmediate(r));
    log.append(b('abc'));
    log.append(b('def')); // 6 > 4: the first 4 at once, "ef" read from the log
    expect(events).toEqual([{ type: 'data', offset: 0, data: b('abcd'), room: b('abcd') }]);
    await waitFor(() => events.length === 2);
    expect(events[1]).toMatchObject({ type: 'data', offset: 4, data: b('ef') });
    log.append(b('gh'));
    sub.pause(); // before the turn ends: "gh" goes back to the log
    expect(sub.next).toBe(6);
    await new Promise((r) => setImmediate(r));
    expect(events.length).toBe(2);
    log.append(b('ij'));
    sub.resume();
    log.close();
    await waitFor(() => events.at(-1)?.type === 'end');
    const text = events.flatMap((e) => (e.type === 'data' ? [e.data.toString()] : [])).join('');
    expect(text).toBe('abcdefghij');
  });

  it('live: a chunk larger than chunkBytes goes out chunkBytes at a time, the first part at once, the rest from the log (memory or file)', async () => {
    for (const memoryBytes of [1 << 20, 4]) {
      const { log } = newLog(memoryBytes);
      const events: LogEvent[] = [];
      log.subscribe(0, (e) => events.push(e), { chunkBytes: 4 });
      await new Promise((r) => setImmediate(r));
      log.append(b('abcdefghij'));
      expect(events).toEqual([{ type: 'data', offset: 0, data: b('abcd') }]);
      log.close();
      await waitFor(() => events.at(-1)?.type === 'end');
      const data = events.flatMap((e) => (e.type === 'data' ? [e] : []));
      expect(data.map((e) => [e.offset, e.data.toString()])).toEqual([[0, 'abcd'], [4, 'efgh'], [8, 'ij']]);
    }
  });

  it('headroom: data read from the file and batches come with free bytes before them, in the same memory; bytes held in memory come as they are', async () => {
    for (const memoryBytes of [1 << 20, 4]) {
      const { log } = newLog(memoryBytes);
      const chunk = b('hello world');
      log.append(chunk);
      const events: LogEvent[] = [];
      log.subscribe(0, (e) => events.push(e), { headroom: 9, chunkBytes: 5 });
      await waitFor(() => events.length === 3);
      expect(events.map((e) => (e.type === 'data' ? e.offset : -1))).toEqual([0, 5, 10]);
      if (memoryBytes > 11) {
        // in memory: the log's own Buffer, no room, no copy
        for (const e of events) if (e.type === 'data') expect(e.room).toBeUndefined();
        chunk[0] = 0x2a;
        expect((events[0] as { data: Buffer }).data[0]).toBe(0x2a);
        continue;
      }
      for (const e of events) {
        if (e.type !== 'data') throw new Error(e.type);
        expect(e.room!.length).toBe(9 + e.data.length);
        expect(e.room!.subarray(9).equals(e.data)).toBe(true);
        e.room![9] = 0x2a; // the same memory
        expect(e.data[0]).toBe(0x2a);
      }
    }
  });

  it('recycle: a room given back (its frame written) is where the next read from the file goes; without it, a new buffer', async () => {
    for (const give of [true, false]) {
      const { log } = newLog(4);
      log.append(Buffer.from('aaaaabbbbbcccccdd'));
      log.close(); // on disk only: every read is a file read
      const texts: string[] = [];
      const rooms: Buffer[] = [];
      const sub = log.subscribe(0, (e) => {
        if (e.type !== 'data') return void texts.push(e.type);
        texts.push(e.data.toString()); // used, then given back: nothing touches it after
        rooms.push(e.room!);
        if (give) sub.recycle(e.room!);
      }, { headroom: 9, chunkBytes: 5 });
      await waitFor(() => texts.at(-1) === 'end');
      expect(texts).toEqual(['aaaaa', 'bbbbb', 'ccccc', 'dd', 'end']);
      expect(rooms.map((r) => r.length)).toEqual([14, 14, 14, 11]);
      const same = (x: Buffer, y: Buffer) => x.buffer === y.buffer && x.byteOffset === y.byteOffset; // the same memory
      expect(rooms.slice(1).map((r) => same(r, rooms[0]!))).toEqual(give ? [true, true, true] : [false, false, false]);
    }
  });

  it('after the spill the last chunks written (at most memoryBytes) are served from memory, the same bytes as the file; none once closed', async () => {
    const { log } = newLog(8);
    const parts = [b('aaaaaa'), b('bbbbbb'), b('cccccc'), b('dd')]; // the first one spills (6 + 6 > 8)
    for (const p of parts) log.append(p);
    const reader = log.openReader();
    expect(reader.peek!(0, 6)).toBeNull(); // only in the file now
    expect(reader.peek!(6, 6)).toBeNull(); // out of the tail (6 + 6 + 2 > 8)
    const held = reader.peek!(13, 100)!;
    expect(held.toString()).toBe('ccccc'); // within its chunk
    expect(reader.peek!(18, 2)!.toString()).toBe('dd');
    expect((await reader.read(12, 8, 0)).toString()).toBe('ccccccdd'); // the file has the same bytes
    parts[2]![1] = 0x78;
    expect(held[0]).toBe(0x78); // the log's own Buffer
    log.close();
    expect(reader.peek!(18, 2)).toBeNull();
    reader.close();
  });

  it('catching up from the file: one descriptor kept open while behind, released at the live edge and on close; one chunk read ahead while paused', async () => {
    const { log, file } = newLog(4);
    log.append(Buffer.alloc(100, 1));
    const writer = openFds(file); // the log's own, for its appends
    let reads = 0;
    const openReader = log.openReader.bind(log);
    log.openReader = () => {
      const reader = openReader();
      return { read: (...args) => (reads++, reader.read(...args)), close: () => reader.close() };
    };
    const events: LogEvent[] = [];
    let pauseNext = true;
    let reserved = 0;
    const readAhead = { tryReserve: (n: number) => ((reserved += n), true), release: (n: number) => void (reserved -= n) };
    const sub = log.subscribe(0, (e) => {
      events.push(e);
      if (pauseNext) {
        pauseNext = false;
        sub.pause();
      }
    }, { chunkBytes: 10, readAhead });
    await waitFor(() => events.length === 1);
    await new Promise((r) => setTimeout(r, 50));
    expect(events.length).toBe(1); // paused after the first chunk
    expect(sub.next).toBe(10);
    expect(reads).toBe(2); // that chunk, and the next one held for the resume: no more
    expect(reserved).toBe(10); // the memory of the one held
    expect(openFds(file)).toBe(writer + 1); // the file stays open (the chunk read ahead is held, not delivered)
    sub.resume();
    await waitFor(() => events.length === 10);
    expect(events.map((e) => (e.type === 'data' ? e.offset : -1))).toEqual([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
    expect(reserved).toBe(0); // given back once delivered
    expect(await waitFor(() => openFds(file) === writer)).toBe(true); // at the live edge: no descriptor of its own
    log.append(Buffer.alloc(5, 2)); // live: handed over, not read
    expect(events.at(-1)).toMatchObject({ type: 'data', offset: 100 });
    sub.close();
    log.dispose();
  });

  it('no read-ahead without memory for it: a refused reservation, or none offered; a held chunk gives its memory back when skipped or closed', async () => {
    const { log } = newLog(4);
    log.append(Buffer.alloc(100, 1));
    for (const readAhead of [undefined, { tryReserve: () => false, release: () => {} }]) {
      let reads = 0;
      const openReader = log.openReader.bind(log);
      log.openReader = () => {
        const reader = openReader();
        return { read: (...args) => (reads++, reader.read(...args)), close: () => reader.close() };
      };
      const events: LogEvent[] = [];
      const sub = log.subscribe(0, (e) => (events.push(e), sub.pause()), { chunkBytes: 10, readAhead });
      await waitFor(() => events.length === 1);
      await new Promise((r) => setTimeout(r, 30));
      expect(reads).toBe(1);
      sub.close();
      log.openReader = openReader;
    }
    let reserved = 0;
    const readAhead = { tryReserve: (n: number) => ((reserved += n), true), release: (n: number) => void (reserved -= n) };
    for (const end of ['skip', 'close'] as const) {
      const events: LogEvent[] = [];
      const sub = log.subscribe(0, (e) => (events.push(e), sub.pause()), { chunkBytes: 10, readAhead });
      await waitFor(() => reserved === 10);
      if (end === 'skip') expect(sub.skip()).toEqual({ from: 10, to: 100 });
      else sub.close();
      expect(reserved).toBe(0);
      sub.close();
    }
    log.dispose();
  });

  it('the end event counts the bytes dropped past the cap', async () => {
    const { log } = newLog(1 << 20, 5);
    log.append(b('abcdefgh'));
    log.close();
    const s = collect(log, 0);
    await waitFor(s.ended);
    expect(s.events.at(-1)).toEqual({ type: 'end', end: 5, truncated: true, dropped: 3 });
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
