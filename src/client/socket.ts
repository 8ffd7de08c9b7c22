import { ExecdError } from './errors.js';

/**
 * A WebSocket (the global one: browsers and Node 22) read as a sequence: `next()` gives each message in
 * order, then one `close`. The WebSocket API has no way to stop reading, so messages wait here until read;
 * past `maxBuffered` bytes of them the reader closes the connection itself (`paused` in the close item):
 * a stream resumes by offset once its consumer has caught up, so a slow consumer costs a reconnection,
 * never unbounded memory.
 */
export type SocketItem =
  | { kind: 'text'; text: string }
  | { kind: 'binary'; bytes: Uint8Array }
  | { kind: 'close'; code: number; reason: string; opened: boolean; paused: boolean };

const sizeOf = (item: SocketItem): number => (item.kind === 'text' ? item.text.length : item.kind === 'binary' ? item.bytes.length : 0);

export class SocketReader {
  readonly ws: WebSocket;
  private readonly items: SocketItem[] = [];
  private wake: (() => void) | null = null;
  private opened = false;
  private closed = false;
  private buffered = 0;
  private paused = false;
  readonly open: Promise<boolean>;

  constructor(url: string, auth: SocketAuth, private readonly maxBuffered = Infinity) {
    // Node's WebSocket (undici) takes {headers} where browsers take only subprotocols.
    this.ws = new WebSocket(url, auth as string[]);
    this.ws.binaryType = 'arraybuffer';
    this.open = new Promise((resolve) => {
      this.ws.addEventListener('open', () => ((this.opened = true), resolve(true)));
      this.ws.addEventListener('close', () => resolve(false));
      this.ws.addEventListener('error', () => resolve(this.opened));
    });
    this.ws.addEventListener('message', (e: MessageEvent) => {
      if (this.closed) return;
      const data: unknown = e.data;
      this.push(typeof data === 'string' ? { kind: 'text', text: data } : { kind: 'binary', bytes: new Uint8Array(data as ArrayBuffer) });
      if (this.buffered > this.maxBuffered) {
        this.paused = true;
        this.close();
      }
    });
    this.ws.addEventListener('close', (e: CloseEvent) => this.ended(e.code, e.reason));
    // A refused handshake: browsers follow 'error' with 'close' (1006); Node 22's WebSocket (undici) fires
    // only 'error'. Either way the connection ends there, once.
    this.ws.addEventListener('error', () => {
      if (!this.opened) this.ended(1006, 'the WebSocket handshake failed');
    });
  }

  private ended(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.push({ kind: 'close', code, reason, opened: this.opened, paused: this.paused });
  }

  private push(item: SocketItem): void {
    this.buffered += sizeOf(item);
    this.items.push(item);
    this.wake?.();
    this.wake = null;
  }

  async next(): Promise<SocketItem> {
    while (this.items.length === 0) await new Promise<void>((resolve) => (this.wake = resolve));
    const item = this.items.shift()!;
    this.buffered -= sizeOf(item);
    return item;
  }

  send(frame: unknown): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(1000);
    this.ended(1000, 'closed by the client');
  }
}

/** The second argument of `new WebSocket`: subprotocols, or (Node) headers. */
export type SocketAuth = string[] | { headers: Record<string, string> };

const inNode = typeof (globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node === 'string';
/** An HTTP token (RFC 9110): what a subprotocol may hold. */
const SUBPROTOCOL_SAFE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * How a WebSocket carries the token: in Node, the Authorization header, as every HTTP request does; in a
 * browser, which cannot set headers on a WebSocket, the subprotocol `bearer.<token>` (docs/websocket.md),
 * which only takes a token of letters, digits and !#$%&'*+-.^_`|~.
 */
export function socketAuth(token: string | undefined): SocketAuth {
  if (token === undefined) return [];
  if (inNode) return { headers: { authorization: `Bearer ${token}` } };
  if (!SUBPROTOCOL_SAFE.test(token)) {
    throw new ExecdError(0, 'BAD_TOKEN', "a browser cannot send this token on a WebSocket: only letters, digits and !#$%&'*+-.^_`|~ fit a subprotocol");
  }
  return [`bearer.${token}`];
}

/** Wait `ms`, or less when the signal aborts. */
export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
