import type { IncomingMessage } from 'node:http';
import { WebSocket, type ClientOptions } from 'ws';
import { expect } from 'vitest';
import { GapFrame, OutputFrame } from '../../src/schemas/stream.js';
import { TOKEN, type TestApp } from './app.js';

export type Frame = { type: string; [key: string]: unknown };

export interface ConnectOptions extends ClientOptions {
  /** Default: Authorization with the test token; null sends none. */
  token?: string | null;
  protocols?: string[];
}

/** A real `ws` client on a listening test app, recording every frame. */
export class Client {
  readonly frames: Frame[] = [];
  /** Resolves with the close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  private waiters: Array<{ pred: (f: Frame) => boolean; resolve: (f: Frame) => void }> = [];

  constructor(readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      const frame = isBinary ? binaryFrame(data as Buffer) : (JSON.parse(String(data)) as Frame);
      this.frames.push(frame);
      this.waiters = this.waiters.filter((w) => !(w.pred(frame) && (w.resolve(frame), true)));
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** The first frame (already received or to come) that matches. */
  next(pred: (f: Frame) => boolean): Promise<Frame> {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** Every frame until the server closes. */
  async all(): Promise<{ frames: Frame[]; code: number }> {
    const { code } = await this.closed;
    return { frames: this.frames, code };
  }
}

/**
 * A binary frame (encoding=binary) as a Frame: `{type: 'output', stream, offset, encoding: 'binary', bytes}`; the
 * header is checked here (stream 1 or 2, an offset below 2^53, at least one data byte).
 */
export function binaryFrame(data: Buffer): Frame {
  expect(data.length, 'a binary frame has a 9-byte header and data').toBeGreaterThan(9);
  const stream = data[0] === 1 ? 'stdout' : data[0] === 2 ? 'stderr' : null;
  expect(stream, `stream byte ${data[0]}`).not.toBeNull();
  const offset = data.readBigUInt64BE(1);
  expect(offset <= BigInt(Number.MAX_SAFE_INTEGER)).toBe(true);
  return { type: 'output', stream, offset: Number(offset), encoding: 'binary', bytes: Buffer.from(data.subarray(9)) };
}

export const wsUrl = (t: TestApp, path: string) => `${t.url.replace(/^http/, 'ws')}${path}`;

function open(t: TestApp, path: string, options: ConnectOptions = {}): WebSocket {
  const { token = TOKEN, protocols, headers, ...rest } = options;
  return new WebSocket(wsUrl(t, path), protocols ?? [], {
    ...rest,
    headers: { ...(token === null ? {} : { authorization: `Bearer ${token}` }), ...headers },
  });
}

/** Open a WebSocket and wait until it is open. */
export async function connect(t: TestApp, path: string, options: ConnectOptions = {}): Promise<Client> {
  const ws = open(t, path, options);
  const client = new Client(ws); // listening before the first frame can arrive
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => reject(new Error(`upgrade refused: ${res.statusCode} ${Buffer.concat(chunks).toString()}`)));
    });
  });
  return client;
}

interface Refusal {
  status: number;
  body: Record<string, unknown>;
  type: string;
}

/** An upgrade the server must refuse: its HTTP status and problem body (no WebSocket ever opens). */
export function refusal(t: TestApp, path: string, options: ConnectOptions = {}): Promise<Refusal> {
  const ws = open(t, path, options);
  return new Promise((resolve, reject) => {
    ws.once('open', () => reject(new Error('the upgrade was accepted')));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode!, type: String(res.headers['content-type']), body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> }),
      );
    });
    ws.once('error', () => {}); // the refused upgrade also errors after unexpected-response
  });
}

export interface Reassembled {
  bytes: Buffer;
  /** Offset of the first frame of the stream. */
  start: number;
  /** Offset after the last frame. */
  end: number;
  gaps: GapFrame[];
}

/**
 * The bytes of one stream from its output frames, checking the contract on
 * the way: every frame is valid, and frames and gaps are contiguous.
 */
export function reassemble(frames: Frame[], stream: 'stdout' | 'stderr', from = 0): Reassembled {
  const parts: Buffer[] = [];
  const gaps: GapFrame[] = [];
  let at: number | null = null;
  let start = from;
  for (const f of frames) {
    if (f.type === 'gap' && f.stream === stream) {
      const gap = GapFrame.parse(f);
      expect(gap.from, `gap ${JSON.stringify(gap)} after ${at}`).toBe(at ?? from);
      expect(gap.to).toBeGreaterThan(gap.from);
      gaps.push(gap);
      at = gap.to;
    }
    if (f.type !== 'output' || f.stream !== stream) continue;
    const out = f.encoding === 'binary' ? { offset: f.offset as number, bytes: f.bytes as Buffer } : OutputFrame.parse(f);
    if (at === null) start = out.offset;
    expect(out.offset, `frame at ${out.offset} after ${at}`).toBe(at ?? from);
    const bytes = 'bytes' in out ? out.bytes : Buffer.from(out.data, out.encoding === 'base64' ? 'base64' : 'utf8');
    parts.push(bytes);
    at = out.offset + bytes.length;
  }
  return { bytes: Buffer.concat(parts), start, end: at ?? from, gaps };
}

/** The viewers the app holds open now. */
export const viewerCount = (t: TestApp) => t.app.viewers.jobViewerCount + t.app.viewers.eventViewerCount;
