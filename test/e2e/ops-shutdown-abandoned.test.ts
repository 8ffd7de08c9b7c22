import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/proc.js';
import { SERVER_TOKEN, startServer, stopServer, tempInstanceDir, type ServerProcess } from '../helpers/server.js';

/** Long enough that a drain waiting for it is unmistakable; an idle server's shutdown takes a fraction of a second. */
const GRACE_MS = 8000;

let server: ServerProcess | undefined;
afterEach(() => {
  stopServer(server);
  server = undefined;
});

async function start(): Promise<ServerProcess> {
  server = await startServer({
    EXECD_SHUTDOWN_GRACE_MS: String(GRACE_MS),
    EXECD_SHUTDOWN_TIMEOUT_MS: String(GRACE_MS + 5000),
    EXECD_INSTANCE_DIR: tempInstanceDir(),
  });
  return server;
}

/** One request on `agent`; resolves with its status (0 when the connection failed or was cut). */
function request(s: ServerProcess, agent: http.Agent, path: string, body?: unknown): { done: Promise<number>; req: http.ClientRequest } {
  const url = new URL(s.url);
  let req!: http.ClientRequest;
  const done = new Promise<number>((resolve) => {
    req = http.request(
      { agent, host: url.hostname, port: url.port, path, method: body === undefined ? 'GET' : 'POST', headers: { authorization: `Bearer ${SERVER_TOKEN}`, 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
        res.on('error', () => resolve(0));
      },
    );
    req.on('error', () => resolve(0));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
  return { done, req };
}

/**
 * SIGTERM the server: how long its shutdown took (its own "shut down" line: the drain and the close, which a
 * loaded test machine slows less than a process exit), the wall time to its exit, and whether the drain had
 * to reach its grace.
 */
async function shutdownTime(s: ServerProcess): Promise<{ ms: number; wallMs: number; graceReached: boolean; code: number | null }> {
  const t0 = Date.now();
  s.child.kill('SIGTERM');
  const { code } = await s.exited;
  const wallMs = Date.now() - t0;
  const ms = Number(s.logs.find((l) => l.msg === 'shut down')?.durationMs ?? Infinity);
  const graceReached = s.logs.some((l) => /shutdown grace/.test(l.msg));
  expect(wallMs).toBeLessThan(GRACE_MS / 2);
  return { ms, wallMs, graceReached, code };
}

describe('the shutdown drain waits only for requests whose clients are still there', () => {
  it('a sync run its client abandoned (process tree killed at once) does not hold a later SIGTERM', async () => {
    const s = await start();
    const agent = new http.Agent();
    const { req, done } = request(s, agent, '/v1/run', { command: 'sleep 300' });
    // The run is there (a process group of this server), then its client goes.
    expect(await waitFor(async () => ((await (await s.api('/v1/processes?execd=true')).json()) as { items: unknown[] }).items.length > 0, 10_000)).toBe(true);
    req.destroy();
    expect(await done).toBe(0);
    expect(await waitFor(async () => ((await (await s.api('/v1/processes?execd=true')).json()) as { items: unknown[] }).items.length === 0, 5000)).toBe(true);
    // Every run is one audit line, an abandoned one too (Fastify runs no onResponse hook for it).
    const audit = await s.waitForLog((l) => l.event === 'run' && l.command === 'sleep 300', 5000);
    expect(audit).toMatchObject({ status: 499, outcome: 'abandoned', signal: 'SIGTERM' });
    expect(s.logs.filter((l) => l.event === 'run' && l.command === 'sleep 300')).toHaveLength(1);

    const { ms, graceReached, code } = await shutdownTime(s);
    expect(graceReached).toBe(false);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(1000);
  }, 60_000);

  it('after a burst of keep-alive requests, idle keep-alive connections do not hold it', async () => {
    const s = await start();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    const all: Promise<number>[] = [];
    for (let i = 0; i < 100; i++) all.push(request(s, agent, i % 2 ? '/v1/info' : '/v1/run', i % 2 ? undefined : { argv: ['true'] }).done);
    expect(new Set(await Promise.all(all))).toEqual(new Set([200]));
    // 8 connections stay open and idle.
    const { ms, graceReached } = await shutdownTime(s);
    expect(graceReached).toBe(false);
    expect(ms).toBeLessThan(1000);
    agent.destroy();
  }, 60_000);

  it('a load run cut off mid-request (as wrk ends) does not hold it', async () => {
    const s = await start();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    let stop = false;
    let answered = 0;
    const loops = Array.from({ length: 16 }, async (_, i) => {
      while (!stop) if ((await request(s, agent, '/v1/run', { command: `sleep 0.0${i % 10}` }).done) === 200) answered++;
    });
    expect(await waitFor(() => answered >= 50, 10_000)).toBe(true);
    stop = true;
    agent.destroy(); // every connection cut, most of them mid-request
    await Promise.all(loops);
    await new Promise((r) => setTimeout(r, 200)); // the cut runs are killed and reaped

    const { ms, graceReached } = await shutdownTime(s);
    expect(graceReached).toBe(false);
    expect(ms).toBeLessThan(1000);
  }, 60_000);
});
