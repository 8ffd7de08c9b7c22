import { EventEmitter, once } from 'node:events';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import type { FastifyBaseLogger } from 'fastify';
import { WebSocket, WebSocketServer } from 'ws';
import { describe, expect, it } from 'vitest';
import type { JobQueue } from '../../../src/queue/index.js';
import { EventsViewer } from '../../../src/stream/events-viewer.js';
import { originAllowed } from '../../../src/plugins/origin.js';
import { binaryFrameHeader, FAIR_SHARE_BYTES, Outbox, SendBudget } from '../../../src/stream/outbox.js';
import { binaryOutputHeader, putBinaryHeader } from '../../../src/stream/frames.js';
import { waitFor } from '../../helpers/proc.js';
import { incompleteTail, Utf8Framer } from '../../../src/stream/utf8-framer.js';
import type { ViewerContext } from '../../../src/stream/viewer.js';

describe('Utf8Framer', () => {
  it('never splits a character, whatever the chunking: texts join to the input, each offset = previous + UTF-8 length', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', '\n', 'é', '€', '中', '𝄞', '\ud834'), { maxLength: 120 }).map((cs) => cs.join('')), fc.array(fc.nat(40), { maxLength: 30 }), (text, cuts) => {
        const bytes = Buffer.from(text); // lone surrogates become U+FFFD: valid UTF-8 either way
        const framer = new Utf8Framer();
        const pieces: Array<{ offset: number; text: string }> = [];
        const decoded = (p: { offset: number; bytes: Buffer } | null) => p && { offset: p.offset, text: p.bytes.toString() };
        let at = 0;
        for (const c of [...cuts, bytes.length]) {
          const n = Math.min(c, bytes.length - at);
          const piece = decoded(framer.push(at, bytes.subarray(at, at + n)));
          if (piece) pieces.push(piece);
          at += n;
          if (at >= bytes.length) break;
        }
        const tail = decoded(framer.flush());
        if (tail) pieces.push(tail);
        let next = 0;
        for (const p of pieces) {
          const n = Buffer.byteLength(p.text);
          if (p.offset !== next || !Buffer.from(p.text).equals(bytes.subarray(next, next + n))) return false;
          next += n;
        }
        return next === bytes.length && pieces.map((p) => p.text).join('') === bytes.toString();
      }),
      { numRuns: 300 },
    );
  });

  it('holds only an incomplete sequence, and drop() says where it began', () => {
    expect(incompleteTail(Buffer.from([0x61, 0xe2, 0x82]))).toBe(1);
    expect(incompleteTail(Buffer.from([0x61, 0xe2, 0x82, 0xac]))).toBe(4);
    expect(incompleteTail(Buffer.from([0xf0, 0x9d, 0x84]))).toBe(0);
    expect(incompleteTail(Buffer.from([0x80, 0x80, 0x80, 0x80]))).toBe(4); // stray continuation bytes: nothing to wait for
    expect(incompleteTail(Buffer.from([0xff]))).toBe(1);
    const framer = new Utf8Framer();
    expect(framer.push(10, Buffer.from([0x61, 0xe2]))).toEqual({ offset: 10, bytes: Buffer.from('a') });
    expect(framer.drop()).toBe(11);
    expect(framer.drop()).toBeNull();
    expect(framer.push(20, Buffer.from('z'))).toEqual({ offset: 20, bytes: Buffer.from('z') });
  });
});

describe('originAllowed', () => {
  it('matches origins as browsers send them; no Origin is a non-browser client', () => {
    const allowed = ['https://dash.example.com', 'http://localhost:5173'];
    expect(originAllowed(undefined, [])).toBe(true);
    expect(originAllowed('https://dash.example.com', allowed)).toBe(true);
    expect(originAllowed('https://DASH.example.com:443', allowed)).toBe(true);
    expect(originAllowed('http://dash.example.com', allowed)).toBe(false);
    expect(originAllowed('https://dash.example.com.evil.io', allowed)).toBe(false);
    expect(originAllowed('null', allowed)).toBe(false);
    expect(originAllowed('garbage', allowed)).toBe(false);
    expect(originAllowed('https://dash.example.com', [])).toBe(false);
  });

  it("allows the server's own origin (Origin names the Host the request went to) without any setting", () => {
    expect(originAllowed('http://127.0.0.1:8080', [], '127.0.0.1:8080')).toBe(true);
    expect(originAllowed('https://execd.example:443', [], 'EXECD.example')).toBe(true);
    expect(originAllowed('http://127.0.0.1:8081', [], '127.0.0.1:8080')).toBe(false);
    expect(originAllowed('http://evil.example', [], '127.0.0.1:8080')).toBe(false);
    expect(originAllowed('null', [], 'null')).toBe(false);
    expect(originAllowed('http://127.0.0.1:8080', [], 'bad host/')).toBe(false);
  });
});

/** A WebSocket whose writes complete only when the test says so. */
class FakeSocket extends EventEmitter {
  readyState = 1;
  sent: string[] = [];
  private callbacks: Array<() => void> = [];
  send(data: Buffer, _options: unknown, cb: () => void): void {
    this.sent.push(data.toString());
    this.callbacks.push(cb);
  }
  /** The kernel takes every frame sent so far. */
  flush(): void {
    const cbs = this.callbacks;
    this.callbacks = [];
    for (const cb of cbs) cb();
  }
  ping(): void {}
  terminate(): void {}
  close(): void {}
}

const quiet = { info() {}, error() {}, warn() {}, debug() {} } as unknown as FastifyBaseLogger;
function context(budget: SendBudget, maxBufferBytes: number): ViewerContext {
  return { jobs: {} as JobQueue, budget, maxBufferBytes, log: quiet, audit: quiet, release() {} };
}

describe('bounded send buffers', () => {
  it('an events viewer that does not read has events dropped, then one lagged frame counting them', () => {
    const ws = new FakeSocket();
    const viewer = new EventsViewer(ws as unknown as WebSocket, context(new SendBudget(1 << 30), 16384), { id: 'env', scopes: new Set(['admin']) });
    const event = Buffer.from(JSON.stringify({ type: 'queued', job: { id: 'x'.repeat(980) } }));
    for (let i = 0; i < 100; i++) viewer.deliver(event);
    const sent = ws.sent.length;
    expect(sent).toBe(17); // 16384 bytes of ~1000-byte frames, then it is over its bound
    expect(viewer.outbox.bufferedBytes).toBeLessThanOrEqual(16384 + event.length);
    ws.flush();
    expect(JSON.parse(ws.sent.at(-1)!)).toEqual({ type: 'lagged', dropped: 100 - sent });
    viewer.deliver(event);
    expect(ws.sent.at(-1)).toBe(event.toString());
  });

  it('past the shared budget, every viewer holding more than its fair share counts as overloaded', () => {
    const budget = new SendBudget(100_000);
    const a = new Outbox(new FakeSocket() as unknown as WebSocket, 1 << 20, budget, () => {});
    const b = new Outbox(new FakeSocket() as unknown as WebSocket, 1 << 20, budget, () => {});
    a.send(Buffer.alloc(90_000));
    expect(a.overloaded).toBe(false);
    b.send(Buffer.alloc(FAIR_SHARE_BYTES / 2));
    expect(budget.exceeded).toBe(true);
    expect(a.overloaded).toBe(true);
    expect(b.overloaded).toBe(false);
    a.dispose();
    expect(budget.total).toBe(FAIR_SHARE_BYTES / 2);
  });
});

describe('binary frames: Outbox.sendParts', () => {
  it('a real ws client receives head + bytes as one binary message, for each size of WebSocket length field; the bytes are counted until written', async () => {
    const wss = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
    await once(wss, 'listening');
    const serverSide = once(wss, 'connection') as Promise<[WebSocket]>;
    const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`, { perMessageDeflate: false });
    const got: Array<{ data: Buffer; isBinary: boolean }> = [];
    client.on('message', (data: Buffer, isBinary) => got.push({ data, isBinary }));
    const [ws] = await serverSide;
    try {
      const budget = new SendBudget(1 << 30);
      const outbox = new Outbox(ws, 1 << 30, budget, () => {});
      const sizes = [1, 116, 117, 65_526, 65_527, 1_000_000];
      const sent = sizes.map((n, i) => ({ head: binaryOutputHeader('stderr', 2 ** 40 + i), bytes: Buffer.alloc(n, i + 1) }));
      for (const { head, bytes } of sent) outbox.sendParts(head, bytes);
      expect(outbox.bufferedBytes).toBe(sizes.reduce((a, n) => a + n + 9, 0));
      expect(await waitFor(() => got.length === sizes.length)).toBe(true);
      got.forEach(({ data, isBinary }, i) => {
        expect(isBinary).toBe(true);
        expect(data.equals(Buffer.concat([sent[i]!.head, sent[i]!.bytes]))).toBe(true);
        expect([data[0], Number(data.readBigUInt64BE(1))]).toEqual([2, 2 ** 40 + i]);
      });
      expect(await waitFor(() => outbox.bufferedBytes === 0)).toBe(true);
      expect(budget.total).toBe(0);
    } finally {
      client.close();
      wss.close();
    }
  });

  it('without the ws internals it expects, it joins head and bytes and sends them the documented way', () => {
    const ws = new FakeSocket();
    const outbox = new Outbox(ws as unknown as WebSocket, 1 << 20, new SendBudget(1 << 30), () => {});
    outbox.sendParts(Buffer.from('ab'), Buffer.from('cd'));
    expect(ws.sent).toEqual(['abcd']);
    expect(outbox.bufferedBytes).toBe(4);
    ws.flush();
    expect(outbox.bufferedBytes).toBe(0);
  });

  it('binaryFrameHeader: RFC 6455 lengths (7-bit, 16-bit, 64-bit), FIN and opcode 2, unmasked', () => {
    const head = Buffer.from([9]);
    expect([...binaryFrameHeader(head, 125)]).toEqual([0x82, 125, 9]);
    expect([...binaryFrameHeader(head, 126)]).toEqual([0x82, 126, 0, 126, 9]);
    expect([...binaryFrameHeader(head, 65_535)]).toEqual([0x82, 126, 0xff, 0xff, 9]);
    expect([...binaryFrameHeader(head, 65_536)]).toEqual([0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0, 9]);
    expect([...binaryFrameHeader(head, 2 ** 32 + 5)]).toEqual([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 5, 9]);
  });

  it('putBinaryHeader: stream byte, then the offset as uint64 big-endian up to 2^53', () => {
    const frame = putBinaryHeader(Buffer.alloc(9), 'stdout', Number.MAX_SAFE_INTEGER);
    expect(frame[0]).toBe(1);
    expect(frame.readBigUInt64BE(1)).toBe(BigInt(Number.MAX_SAFE_INTEGER));
    expect(binaryOutputHeader('stderr', 0x0102030405).toString('hex')).toBe('020000000102030405');
  });
});
