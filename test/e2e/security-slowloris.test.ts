import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';

const HEADERS_TIMEOUT = 1000;
const REQUEST_TIMEOUT = 2000;

interface Client {
  socket: Socket;
  closedAt: Promise<number>;
  timer?: NodeJS.Timeout;
}

let app: TestApp | undefined;
const clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) {
    clearInterval(c.timer);
    c.socket.destroy();
  }
  await app?.close();
  app = undefined;
});

function open(port: number, t0: number): Client {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.on('data', () => {}); // a 408 may come before the close
  const closedAt = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - t0)));
  const c: Client = { socket, closedAt };
  clients.push(c);
  return c;
}

/** Send `chunks` one every `everyMs`, then keep dribbling `filler`, never finishing the request. */
function dribble(c: Client, first: string, filler: string, everyMs: number): void {
  c.socket.once('connect', () => {
    c.socket.write(first);
    c.timer = setInterval(() => {
      if (!c.socket.destroyed) c.socket.write(filler);
    }, everyMs);
  });
}

const portOf = (a: TestApp) => Number(new URL(a.url).port);

describe('slow clients (slowloris)', () => {
  it('100 slow clients are cut off within the timeouts while /healthz keeps answering', async () => {
    app = await startApp({ EXECD_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT), EXECD_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT) });
    const port = portOf(app);
    expect((await fetch(`${app.url}/healthz`)).status).toBe(200); // warm the client up
    const t0 = Date.now();
    const slowHeaders = Array.from({ length: 40 }, () => open(port, t0));
    const silent = Array.from({ length: 30 }, () => open(port, t0));
    const slowBody = Array.from({ length: 30 }, () => open(port, t0));
    for (const c of slowHeaders) dribble(c, 'GET /healthz HTTP/1.1\r\nHost: x\r\n', 'X-Slow: 1\r\n', 200);
    for (const c of slowBody) {
      dribble(
        c,
        `POST /v1/run HTTP/1.1\r\nHost: x\r\nAuthorization: ${AUTH.authorization}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"argv":["true"],"cwd":"`,
        'a',
        200,
      );
    }

    // /healthz answers promptly all along
    const latencies: number[] = [];
    for (let i = 0; i < 8; i++) {
      const s = Date.now();
      const res = await fetch(`${app.url}/healthz`);
      expect(res.status).toBe(200);
      latencies.push(Date.now() - s);
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(Math.max(...latencies)).toBeLessThan(1000);

    const headerCut = await Promise.all([...slowHeaders, ...silent].map((c) => c.closedAt));
    const bodyCut = await Promise.all(slowBody.map((c) => c.closedAt));
    // cut off after the timeout (not before), within the timeout plus Node's check interval (a quarter of it) and slack
    expect(Math.min(...headerCut)).toBeGreaterThanOrEqual(HEADERS_TIMEOUT - 50);
    expect(Math.max(...headerCut)).toBeLessThan(HEADERS_TIMEOUT * 1.25 + 1000);
    expect(Math.min(...bodyCut)).toBeGreaterThanOrEqual(REQUEST_TIMEOUT - 50);
    expect(Math.max(...bodyCut)).toBeLessThan(REQUEST_TIMEOUT * 1.25 + 1000);
    expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
  });

  it('the request timeout bounds receiving a request, not the answer: a run longer than it still answers', async () => {
    app = await startApp({ EXECD_HEADERS_TIMEOUT_MS: '500', EXECD_REQUEST_TIMEOUT_MS: '1000' });
    const res = await app.http.post('/v1/run').set(AUTH).send({ argv: ['sleep', '2'] });
    expect(res.status).toBe(200);
    expect(res.body.returncode).toBe(0);
  });

  it('EXECD_MAX_CONNECTIONS caps simultaneous connections; a slot frees when a slow client is cut off', async () => {
    app = await startApp({ EXECD_MAX_CONNECTIONS: '10', EXECD_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT), EXECD_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT) });
    const port = portOf(app);
    const t0 = Date.now();
    const holders = Array.from({ length: 10 }, () => open(port, t0));
    await Promise.all(holders.map((c) => new Promise((r) => c.socket.once('connect', r))));
    await new Promise((r) => setTimeout(r, 100));
    const extra = open(port, t0);
    expect(await extra.closedAt).toBeLessThan(HEADERS_TIMEOUT - 100); // refused at once, not served
    await Promise.all(holders.map((c) => c.closedAt));
    expect((await fetch(`${app.url}/healthz`)).status).toBe(200);
  });
});
