import { describe, expect, it } from 'vitest';
import { Offsets, OutputTail, parseBinaryFrame, reconnectDelay, type SocketLike, type TailStatus } from '../../../ui/src/tail.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

describe('Offsets: what a chunk adds to what was seen', () => {
  it('passes a contiguous chunk whole, drops a repeated one, and cuts an overlapping one to its new bytes', () => {
    const o = new Offsets();
    expect(dec.decode(o.accept('stdout', 0, enc.encode('abc')).fresh!)).toBe('abc');
    expect(o.accept('stdout', 0, enc.encode('abc'))).toEqual({ fresh: null, hole: null });
    expect(o.accept('stdout', 1, enc.encode('bc'))).toEqual({ fresh: null, hole: null });
    expect(dec.decode(o.accept('stdout', 1, enc.encode('bcdef')).fresh!)).toBe('def');
    expect(o.next).toEqual({ stdout: 6, stderr: 0 });
  });

  it('keeps the streams apart', () => {
    const o = new Offsets({ stdout: 10 });
    expect(dec.decode(o.accept('stderr', 0, enc.encode('e')).fresh!)).toBe('e');
    expect(o.accept('stdout', 5, enc.encode('12345')).fresh).toBeNull();
    expect(o.next).toEqual({ stdout: 10, stderr: 1 });
  });

  it('reports a chunk that starts past the next byte wanted as a hole, not silently', () => {
    const o = new Offsets();
    const { fresh, hole } = o.accept('stdout', 4, enc.encode('xy'));
    expect(hole).toEqual([0, 4]);
    expect(dec.decode(fresh!)).toBe('xy');
    expect(o.next.stdout).toBe(6);
  });

  it('a gap frame moves the offset past the bytes it skips, and only the unseen part is reported', () => {
    const o = new Offsets({ stdout: 10 });
    expect(o.skip('stdout', 5, 20)).toEqual([10, 20]);
    expect(o.skip('stdout', 12, 18)).toBeNull();
    expect(o.next.stdout).toBe(20);
  });
});

describe('parseBinaryFrame', () => {
  const frame = (tag: number, offset: bigint, body: string) => {
    const b = enc.encode(body);
    const buf = new ArrayBuffer(9 + b.length);
    const v = new DataView(buf);
    v.setUint8(0, tag);
    v.setBigUint64(1, offset, false);
    new Uint8Array(buf, 9).set(b);
    return buf;
  };

  it('reads the stream, the big-endian offset and the bytes', () => {
    const f = parseBinaryFrame(frame(2, 1234567890123n, 'hi'))!;
    expect(f.stream).toBe('stderr');
    expect(f.offset).toBe(1234567890123);
    expect(dec.decode(f.bytes)).toBe('hi');
    expect(parseBinaryFrame(frame(1, 0n, ''))!.stream).toBe('stdout');
  });

  it('refuses an unknown stream tag, a short frame and an offset past 2^53', () => {
    expect(parseBinaryFrame(frame(3, 0n, 'x'))).toBeNull();
    expect(parseBinaryFrame(new ArrayBuffer(8))).toBeNull();
    expect(parseBinaryFrame(frame(1, 2n ** 60n, 'x'))).toBeNull();
  });
});

it('reconnectDelay: quick first, doubling, at most 10 s', () => {
  expect([1, 2, 3, 4, 5, 6, 7, 8].map(reconnectDelay)).toEqual([250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
});

/** A socket the test drives: open it, send it frames, close it. */
class FakeSocket implements SocketLike {
  binaryType = 'blob';
  readyState = 0;
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  sent: string[] = [];
  closed = false;
  constructor(readonly url: string) {}
  send(data: string) {
    this.sent.push(data);
  }
  close() {
    this.closed = true;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  json(frame: Record<string, unknown>) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  out(stream: 'stdout' | 'stderr', offset: number, text: string) {
    this.json({ type: 'output', stream, offset, encoding: 'base64', data: Buffer.from(text).toString('base64') });
  }
  drop() {
    this.readyState = 3;
    this.onclose?.({ code: 1006 });
  }
}

function harness(probeAnswer: { status: number; body: Record<string, unknown> } = { status: 426, body: {} }) {
  const sockets: FakeSocket[] = [];
  const timers: (() => void)[] = [];
  const seen = { stdout: '', stderr: '' };
  const gaps: [string, number, number][] = [];
  const statuses: TailStatus[] = [];
  const probes: string[] = [];
  const tail = new OutputTail({
    jobId: 'j1',
    connect: (url) => {
      const s = new FakeSocket(url);
      sockets.push(s);
      return s;
    },
    probe: async (path) => (probes.push(path), probeAnswer),
    wsUrl: (p) => `ws://h${p}`,
    protocols: () => ['bearer.t'],
    encoding: 'base64',
    setTimer: (fn) => timers.push(fn),
    clearTimer: () => undefined,
    listener: {
      output: (stream, bytes) => (seen[stream] += dec.decode(bytes)),
      gap: (stream, from, to) => gaps.push([stream, from, to]),
      status: (s) => statuses.push(s),
    },
  });
  const fire = async () => {
    await new Promise((r) => setTimeout(r, 0));
    timers.splice(0).forEach((t) => t());
  };
  return { tail, sockets, timers, seen, gaps, statuses, probes, fire };
}

describe('OutputTail: resume after a drop', () => {
  it('reconnects from the next byte of each stream, and replayed bytes are shown once', async () => {
    const h = harness();
    h.tail.start();
    const a = h.sockets[0]!;
    expect(a.url).toBe('ws://h/v1/jobs/j1/stream?encoding=base64&stdoutOffset=0&stderrOffset=0');
    a.open();
    a.out('stdout', 0, 'one\n');
    a.out('stderr', 0, 'E1\n');
    a.out('stdout', 4, 'two\n');
    a.drop(); // the network went away mid-job
    expect(h.statuses.at(-1)).toBe('reconnecting');
    await h.fire();
    const b = h.sockets[1]!;
    expect(b.url).toBe('ws://h/v1/jobs/j1/stream?encoding=base64&stdoutOffset=8&stderrOffset=3');
    b.open();
    // A server may resend from an earlier point (a chunk boundary): only the new part counts.
    b.out('stdout', 4, 'two\nthree\n');
    b.out('stderr', 3, 'E2\n');
    b.json({ type: 'exit', state: 'succeeded', exitCode: 0, signal: null, returncode: 0, timedOut: false });
    b.drop();
    await h.fire();
    expect(h.seen).toEqual({ stdout: 'one\ntwo\nthree\n', stderr: 'E1\nE2\n' });
    expect(h.sockets).toHaveLength(2); // no reconnect after the exit frame
    expect(h.statuses.at(-1)).toBe('ended');
  });

  it('a gap frame is reported once and the resume point moves past it', async () => {
    const h = harness();
    h.tail.start();
    const a = h.sockets[0]!;
    a.open();
    a.out('stdout', 0, 'ab');
    a.json({ type: 'gap', stream: 'stdout', from: 2, to: 100 });
    a.out('stdout', 100, 'z');
    a.drop();
    await h.fire();
    expect(h.gaps).toEqual([['stdout', 2, 100]]);
    expect(h.sockets[1]!.url).toContain('stdoutOffset=101&stderrOffset=0');
  });

  it('offline closes at once and online reconnects at once, from the same offsets', () => {
    const h = harness();
    h.tail.start();
    h.sockets[0]!.open();
    h.sockets[0]!.out('stdout', 0, 'x');
    h.tail.disconnect();
    expect(h.sockets[0]!.closed).toBe(true);
    expect(h.timers).toHaveLength(1); // a retry is due anyway, should no online event come
    h.tail.reconnect();
    expect(h.sockets).toHaveLength(2);
    expect(h.sockets[1]!.url).toContain('stdoutOffset=1');
  });

  it('offline without an online event: the pending retry connects', async () => {
    const h = harness();
    h.tail.start();
    h.sockets[0]!.open();
    h.tail.disconnect();
    await h.fire();
    expect(h.sockets).toHaveLength(2);
  });

  it('a handshake refused with 400 for encoding=binary falls back to base64 text frames', async () => {
    const h = harness({ status: 400, body: { code: 'VALIDATION_FAILED', errors: [{ path: '/encoding' }] } });
    h.tail.encoding = 'binary';
    h.tail.start();
    expect(h.sockets[0]!.url).toContain('encoding=binary');
    h.sockets[0]!.drop(); // never opened
    await h.fire();
    expect(h.probes).toEqual(['/v1/jobs/j1/stream?encoding=binary&stdoutOffset=0&stderrOffset=0']);
    expect(h.sockets[1]!.url).toContain('encoding=base64');
  });

  it('stops for good when the handshake is refused with 401 or 404', async () => {
    for (const status of [401, 404]) {
      const h = harness({ status, body: { detail: 'no' } });
      h.tail.start();
      h.sockets[0]!.drop();
      await h.fire();
      await h.fire();
      expect(h.sockets).toHaveLength(1);
      expect(h.statuses.at(-1)).toBe('refused');
      expect(h.tail.ended).toBe(true);
    }
  });

  it('a token the browser cannot send as a subprotocol stops the tail with a reason, not an exception', () => {
    const statuses: [TailStatus, string][] = [];
    const tail = new OutputTail({
      jobId: 'j',
      connect: () => {
        throw new SyntaxError("The subprotocol 'bearer.a/b' is invalid.");
      },
      probe: async () => ({ status: 200, body: {} }),
      wsUrl: (p) => p,
      protocols: () => ['bearer.a/b'],
      listener: { output: () => undefined, gap: () => undefined, status: (s, d) => statuses.push([s, d]) },
    });
    tail.start();
    expect(statuses.at(-1)![0]).toBe('refused');
    expect(statuses.at(-1)![1]).toContain('letters, digits');
    expect(tail.ended).toBe(true);
  });

  it('keeps retrying, with a growing delay, while execd is unreachable', async () => {
    const h = harness({ status: 503, body: {} });
    h.tail.start();
    for (let i = 0; i < 3; i++) {
      h.sockets.at(-1)!.drop();
      await h.fire();
    }
    expect(h.sockets).toHaveLength(4);
  });

  it('stdin goes as a frame, base64 (as binary and base64 connections take it); nothing is sent while disconnected', () => {
    const h = harness();
    h.tail.start();
    expect(h.tail.sendStdin('hi\n')).toBe(false);
    h.sockets[0]!.open();
    expect(h.tail.sendStdin('hi\n', true)).toBe(true);
    expect(JSON.parse(h.sockets[0]!.sent[0]!)).toEqual({ type: 'stdin', data: Buffer.from('hi\n').toString('base64'), eof: true });
  });

  it('a resize goes as a frame (a job on a terminal); keystrokes are UTF-8 in base64; nothing is sent while disconnected', () => {
    const h = harness();
    h.tail.start();
    expect(h.tail.sendResize(120, 40)).toBe(false);
    h.sockets[0]!.open();
    expect(h.tail.sendResize(120, 40)).toBe(true);
    expect(h.tail.sendStdin('\x03é')).toBe(true);
    expect(h.sockets[0]!.sent.map((f) => JSON.parse(f))).toEqual([
      { type: 'resize', cols: 120, rows: 40 },
      { type: 'stdin', data: Buffer.from('\x03é').toString('base64') },
    ]);
  });
});
