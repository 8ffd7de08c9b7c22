import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';
import { bearer, tempDir } from '../helpers/security.js';
import { startServer, stopServer, type ServerProcess } from '../helpers/server.js';
import { connect, type Client } from '../helpers/stream.js';

const dir = tempDir('execd-revoke-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const WRITER = 'revocable-writer-0123456789';
const ADMIN = 'revocable-admin-0123456789';
type Entry = { id: string; token: string; scopes: string[] };
const writer = (scopes = ['jobs:read', 'jobs:write']): Entry => ({ id: 'writer', token: WRITER, scopes });
const admin = (scopes = ['admin']): Entry => ({ id: 'ops', token: ADMIN, scopes });

let fileSeq = 0;
function tokensFile(entries: Entry[]): string {
  const path = join(dir, `tokens-${++fileSeq}.json`);
  writeFileSync(path, JSON.stringify(entries), { mode: 0o600 });
  return path;
}

let t: TestApp | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** The tokens file rewritten, then reloaded as SIGHUP does (main.ts calls app.security.reload()). */
function reload(app: TestApp, file: string, entries: Entry[]): void {
  writeFileSync(file, JSON.stringify(entries));
  app.app.security.reload();
}

/** A running `cat` with streamed stdin, owned by the writer token. */
async function catJob(app: TestApp): Promise<string> {
  const res = await app.http.post('/v1/jobs').set(bearer(WRITER)).send({ argv: ['cat'], stdin: { stream: true } });
  expect(res.status).toBe(202);
  const id = res.body.id as string;
  expect(await waitFor(async () => (await app.http.get(`/v1/jobs/${id}`).set(AUTH)).body.pid !== null, 10_000)).toBe(true);
  return id;
}

const stateOf = async (app: TestApp, id: string): Promise<string> => (await app.http.get(`/v1/jobs/${id}`).set(AUTH)).body.state as string;

describe('revocation reaches open WebSockets', () => {
  it('a token removed by a reload: its job stream and events sockets close 1008, the job runs on', async () => {
    const file = tokensFile([writer(), admin()]);
    t = await startApp({ EXECD_TOKENS_FILE: file });
    const id = await catJob(t);
    const stream = await connect(t, `/v1/jobs/${id}/stream`, { token: WRITER });
    const events = await connect(t, '/v1/events', { token: WRITER });
    const watcher = await connect(t, `/v1/jobs/${id}/stream`, { token: ADMIN }); // another token's viewer stays
    await stream.next((f) => f.type === 'state' && f.state === 'running');

    reload(t, file, [admin()]);
    for (const client of [stream, events]) {
      const { code, reason } = await client.closed;
      expect(code).toBe(1008);
      expect(reason).toMatch(/revoked/);
      expect(client.frames).toContainEqual(expect.objectContaining({ type: 'error', code: 'UNAUTHORIZED', detail: expect.stringMatching(/"writer" was revoked/) }));
    }
    expect(watcher.ws.readyState).toBe(WebSocket.OPEN);
    expect(await stateOf(t, id)).toBe('running');
    // The revoked token opens nothing new either.
    expect((await t.http.get(`/v1/jobs/${id}`).set(bearer(WRITER))).status).toBe(401);
    await t.http.post(`/v1/jobs/${id}/cancel`).set(AUTH);
  }, 30_000);

  it('jobs:write removed: stdin and signal frames refused on the open socket, the job not killed; given back, taken again', async () => {
    const file = tokensFile([writer()]);
    t = await startApp({ EXECD_TOKENS_FILE: file });
    const id = await catJob(t);
    const stream = await connect(t, `/v1/jobs/${id}/stream`, { token: WRITER });
    await stream.next((f) => f.type === 'state' && f.state === 'running');
    stream.send({ type: 'stdin', data: 'before\n' });
    await stream.next((f) => f.type === 'output' && String(f.data).includes('before'));

    reload(t, file, [writer(['jobs:read'])]);
    stream.send({ type: 'signal', signal: 'SIGKILL' });
    stream.send({ type: 'stdin', data: 'after\n' });
    stream.send({ type: 'stdin', eof: true });
    expect(await waitFor(() => stream.frames.filter((f) => f.type === 'error' && f.code === 'FORBIDDEN').length === 3, 5000)).toBe(true);
    expect(stream.frames.find((f) => f.type === 'error')!.detail).toMatch(/jobs:write/);
    await new Promise((r) => setTimeout(r, 300));
    expect(await stateOf(t, id)).toBe('running'); // neither the SIGKILL nor the eof reached it
    expect(stream.frames.some((f) => f.type === 'output' && String(f.data).includes('after'))).toBe(false);
    expect(stream.ws.readyState).toBe(WebSocket.OPEN); // still a reader

    reload(t, file, [writer()]);
    stream.send({ type: 'stdin', data: 'again\n', eof: true });
    await stream.next((f) => f.type === 'output' && String(f.data).includes('again'));
    const { code } = await stream.closed;
    expect(code).toBe(1000); // cat saw its eof and exited
    expect(await stateOf(t, id)).toBe('succeeded');
  }, 30_000);

  it('jobs:read removed, or admin removed from a viewer of another token\'s job: closed 1008', async () => {
    const file = tokensFile([writer(), admin()]);
    t = await startApp({ EXECD_TOKENS_FILE: file });
    const id = await catJob(t);
    const own = await connect(t, `/v1/jobs/${id}/stream`, { token: WRITER });
    const other = await connect(t, `/v1/jobs/${id}/stream`, { token: ADMIN });
    const otherEvents = await connect(t, '/v1/events', { token: ADMIN });

    reload(t, file, [writer(['jobs:write']), admin(['jobs:read'])]);
    const lost: Array<[Client, RegExp]> = [[own, /jobs:read/], [other, /admin/]];
    for (const [client, reason] of lost) {
      const closed = await client.closed;
      expect(closed.code).toBe(1008);
      expect(closed.reason).toMatch(reason);
      expect(client.frames).toContainEqual(expect.objectContaining({ type: 'error', code: 'FORBIDDEN' }));
    }
    // Events of jobs it can no longer see stop; the socket itself stays (it still holds jobs:read).
    expect(otherEvents.ws.readyState).toBe(WebSocket.OPEN);
    await t.http.post(`/v1/jobs/${id}/cancel`).set(AUTH);
    await new Promise((r) => setTimeout(r, 300));
    expect(otherEvents.frames.filter((f) => f.type === 'finished')).toHaveLength(0);
    otherEvents.ws.close();
  }, 30_000);
});

describe('revocation reaches open follows (GET /output?follow=true)', () => {
  it('a removed token\'s follow is cut; another token\'s follow goes on to the end', async () => {
    const file = tokensFile([writer(), admin()]);
    t = await startApp({ EXECD_TOKENS_FILE: file });
    const id = await catJob(t);
    const stream = await connect(t, `/v1/jobs/${id}/stream`, { token: ADMIN });
    stream.send({ type: 'stdin', data: 'first\n' }); // a follow's headers go with its first bytes
    const follow = async (token: string) => {
      const res = await fetch(`${t!.url}/v1/jobs/${id}/output?follow=true`, { headers: bearer(token) });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      const chunks: Buffer[] = [];
      const ended = (async () => {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return 'ended';
          chunks.push(Buffer.from(value));
        }
      })().catch(() => 'cut');
      return { ended, chunks };
    };
    const own = await follow(WRITER);
    const other = await follow(ADMIN);

    reload(t, file, [admin()]);
    expect(await own.ended).toBe('cut');
    stream.send({ type: 'stdin', data: 'still here\n', eof: true });
    expect(await other.ended).toBe('ended');
    expect(Buffer.concat(other.chunks).toString()).toBe('first\nstill here\n');
    await stream.closed;
  }, 30_000);
});

describe('revocation by SIGHUP (main.ts)', () => {
  let server: ServerProcess | undefined;
  afterEach(() => {
    stopServer(server);
    server = undefined;
  });

  it('rewriting the tokens file and sending SIGHUP closes the removed token\'s open stream with 1008', async () => {
    const file = tokensFile([writer()]);
    server = await startServer({ EXECD_TOKENS_FILE: file });
    const s = server;
    const res = await fetch(`${s.url}/v1/jobs`, { method: 'POST', headers: { ...bearer(WRITER), 'content-type': 'application/json' }, body: JSON.stringify({ argv: ['sleep', '30'] }) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const client = await connect({ url: s.url } as TestApp, `/v1/jobs/${id}/stream`, { token: WRITER });
    await client.next((f) => f.type === 'state' && f.state === 'running');

    writeFileSync(file, JSON.stringify([admin()]));
    s.child.kill('SIGHUP');
    const { code, reason } = await client.closed;
    expect(code).toBe(1008);
    expect(reason).toMatch(/revoked/);
    const job = (await (await s.api(`/v1/jobs/${id}`)).json()) as { state: string };
    expect(job.state).toBe('running');
    expect(s.logs.some((l) => l.event === 'token.revoked' && l.via === 'websocket' && l.tokenId === 'writer' && l.jobId === id)).toBe(true);
    await s.api(`/v1/jobs/${id}/cancel`, { method: 'POST' });
  }, 30_000);
});
