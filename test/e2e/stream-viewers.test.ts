import { rmSync } from 'node:fs';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobEventFrame } from '../../src/schemas/stream.js';
import { streamMetrics } from '../../src/stream/metrics.js';
import { AUTH, TOKEN, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';
import { SCOPED_TOKENS, tempDir, writeTokensFile } from '../helpers/security.js';
import { connect, reassemble, refusal, viewerCount, wsUrl, type Frame } from '../helpers/stream.js';
import { settle, startJobsApp, submit, waitRunning } from '../helpers/jobs.js';

const DASHBOARD = 'https://dash.example.com';
const ALICE = 'tok-alice-0123456789abcdef';
const dir = tempDir('execd-ws-');
let t: TestApp & { dataDir: string };
beforeAll(async () => {
  t = await startJobsApp({
    EXECD_QUEUES: 'default:4',
    EXECD_WS_ORIGINS: `${DASHBOARD}, http://localhost:5173`,
    EXECD_WS_PING_MS: '100',
    EXECD_TOKENS_FILE: writeTokensFile(dir, [{ id: 'alice', token: ALICE, scopes: ['jobs:read', 'jobs:write'] }]),
  });
});
afterAll(async () => {
  await t.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('refused upgrades are HTTP problems, before any WebSocket exists', () => {
  let jobPath: string;
  beforeAll(async () => {
    const job = await submit(t, { argv: ['sleep', '30'] });
    jobPath = `/v1/jobs/${job.id}/stream`;
  });
  afterAll(async () => {
    await t.http.post(`${jobPath.replace('/stream', '')}/cancel`).set(AUTH);
  });

  it('no token, a bad token, a bad subprotocol token: 401', async () => {
    for (const options of [{ token: null }, { token: 'not-the-token-0123456789' }, { token: null, protocols: ['bearer.not-the-token-0123456789'] }]) {
      const r = await refusal(t, jobPath, options);
      expect(r.status, JSON.stringify(options)).toBe(401);
      expect(r.type).toMatch(/^application\/problem\+json/);
      expect(r.body).toMatchObject({ code: 'UNAUTHORIZED', status: 401 });
    }
    expect((await refusal(t, '/v1/events', { token: null })).status).toBe(401);
  });

  it('a browser Origin not in EXECD_WS_ORIGINS: 403 naming the setting; a listed one, the server\'s own and no Origin pass', async () => {
    for (const origin of ['https://evil.example', 'null']) {
      const r = await refusal(t, jobPath, { origin });
      expect(r.status, origin).toBe(403);
      expect(r.body).toMatchObject({ code: 'FORBIDDEN' });
      expect(r.body.detail).toContain('EXECD_WS_ORIGINS');
      expect((await refusal(t, '/v1/events', { origin })).status).toBe(403);
    }
    // Same origin: a page execd serves (/docs, a future /ui/) opens its WebSockets without any setting.
    for (const origin of [DASHBOARD, `${DASHBOARD}:443`, 'http://localhost:5173', t.url]) {
      const ok = await connect(t, jobPath, { origin });
      ok.ws.close();
    }
    const ok = await connect(t, jobPath, { token: null, protocols: [`bearer.${TOKEN}`], origin: DASHBOARD });
    expect(ok.ws.protocol).toBe(`bearer.${TOKEN}`);
    ok.ws.close();
  });

  it('an unknown job: 404; a bad query: 400; a GET without Upgrade: 400', async () => {
    const r = await refusal(t, '/v1/jobs/00000000-0000-4000-8000-000000000000/stream');
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ code: 'NOT_FOUND' });
    expect((await refusal(t, `${jobPath}?encoding=hex`)).status).toBe(400);
    expect((await refusal(t, `${jobPath}?offset=-1`)).status).toBe(400);
    expect((await refusal(t, `${jobPath}?follow=true`)).status).toBe(400);
    const plain = await t.http.get(jobPath).set(AUTH);
    expect(plain.status).toBe(400);
    expect(plain.body.detail).toMatch(/WebSocket/);
    expect((await t.http.get('/v1/events').set(AUTH)).status).toBe(400);
  });

  it('scopes and owners: a token without jobs:read is 403; another token\'s job is 404, as over HTTP', async () => {
    expect((await refusal(t, jobPath, { token: SCOPED_TOKENS.run })).status).toBe(403);
    expect((await refusal(t, '/v1/events', { token: SCOPED_TOKENS['jobs:write'] })).status).toBe(403);
    const other = await refusal(t, jobPath, { token: SCOPED_TOKENS['jobs:read'] });
    expect(other.status).toBe(404);
    expect(other.body).toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('viewers that vanish are cleaned up', () => {
  it('a client whose socket is destroyed without a close frame', async () => {
    const job = await submit(t, { argv: ['sleep', '30'] });
    await waitRunning(t, job.id);
    const before = viewerCount(t);
    const v = await connect(t, `/v1/jobs/${job.id}/stream`);
    await v.next((f) => f.type === 'state');
    expect(viewerCount(t)).toBe(before + 1);
    (v.ws as unknown as { _socket: { destroy(): void } })._socket.destroy();
    expect(await waitFor(() => viewerCount(t) === before)).toBe(true);
    await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH);
  });

  it('a client that stops answering pings is terminated by the heartbeat', async () => {
    const job = await submit(t, { argv: ['sleep', '30'] });
    await waitRunning(t, job.id);
    const dead0 = streamMetrics.deadViewersTotal;
    const [mute, events] = await Promise.all([
      connect(t, `/v1/jobs/${job.id}/stream`, { autoPong: false }),
      connect(t, '/v1/events', { autoPong: false }),
    ]);
    const alive = await connect(t, `/v1/jobs/${job.id}/stream`); // answers pings: stays
    expect((await mute.closed).code).toBe(1006);
    expect((await events.closed).code).toBe(1006);
    expect(streamMetrics.deadViewersTotal - dead0).toBeGreaterThanOrEqual(2);
    expect(alive.ws.readyState).toBe(WebSocket.OPEN);
    await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH);
    expect((await alive.closed).code).toBe(1000);
    expect(await waitFor(() => viewerCount(t) === 0)).toBe(true);
  });
});

describe('a job removed while it is viewed', () => {
  it('the viewer gets a gap for the bytes it had not got, a NOT_FOUND error frame and close 1001', async () => {
    const job = await submit(t, { command: 'head -c 30000000 /dev/zero', maxOutputBytes: 30_000_000 });
    await settle(t, job.id);
    const v = await connect(t, `/v1/jobs/${job.id}/stream?encoding=base64`);
    const socket = (v.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause(); // the replay stalls: the viewer is still reading the log when the job goes
    await t.http.delete(`/v1/jobs/${job.id}`).set(AUTH).expect(204);
    socket.resume();
    const { frames, code } = await v.all();
    expect(code).toBe(1001);
    expect(frames.at(-1)).toMatchObject({ type: 'error', code: 'NOT_FOUND' });
    expect(frames.some((f) => f.type === 'exit')).toBe(false);
    // what it got, then one gap to the end of what the job had written (reassemble checks they join)
    const got = reassemble(frames, 'stdout');
    expect(got.gaps).toEqual([{ type: 'gap', stream: 'stdout', from: got.bytes.length, to: 30_000_000 }]);
    expect(got.bytes.length).toBeLessThan(30_000_000);
    expect(got.end).toBe(30_000_000);
    expect(frames.findIndex((f) => f.type === 'gap')).toBe(frames.length - 2); // the gap, then the error frame
    expect(reassemble(frames, 'stderr').gaps).toEqual([]); // stderr was empty: nothing withheld
  });
});

describe('GET /v1/events', () => {
  it('sees queued, started and finished of a job, with the Job', async () => {
    const events = await connect(t, '/v1/events');
    const job = await submit(t, { command: 'exit 2' });
    const finished = await events.next((f) => f.type === 'finished' && (f.job as { id: string }).id === job.id);
    const mine = events.frames.filter((f) => (f.job as { id?: string } | undefined)?.id === job.id).map((f) => JobEventFrame.parse(f));
    expect(mine.map((f) => f.type)).toEqual(['queued', 'started', 'finished']);
    expect(mine.map((f) => f.job.state)).toEqual(['queued', 'running', 'failed']);
    expect(mine[1]!.job.pid).toEqual(expect.any(Number));
    expect(JobEventFrame.parse(finished).job.result).toMatchObject({ exitCode: 2, returncode: 2 });
    events.send({ type: 'stdin', data: 'x' });
    expect(await events.next((f) => f.type === 'error')).toMatchObject({ code: 'VALIDATION_FAILED' });
    events.ws.close();
    await waitFor(() => t.app.viewers.eventViewerCount === 0);
  });
  it("a token that is not admin sees its own jobs' events only", async () => {
    const [mine, all] = await Promise.all([connect(t, '/v1/events', { token: ALICE }), connect(t, '/v1/events')]);
    const theirs = await submit(t, { argv: ['true'] });
    const own = await submit(t, { argv: ['true'] }, { authorization: `Bearer ${ALICE}` });
    const idOf = (f: Frame) => (f.job as { id?: string } | undefined)?.id;
    await all.next((f) => f.type === 'finished' && idOf(f) === own.id);
    await mine.next((f) => f.type === 'finished' && idOf(f) === own.id);
    await all.next((f) => f.type === 'finished' && idOf(f) === theirs.id);
    expect(mine.frames.some((f) => idOf(f) === theirs.id)).toBe(false);
    expect(mine.frames.filter((f) => idOf(f) === own.id).map((f) => f.type)).toEqual(['queued', 'started', 'finished']);
    mine.ws.close();
    all.ws.close();
  });
});

describe('shutdown', () => {
  it('closing the server closes its viewers with 1001', async () => {
    const other = await startJobsApp({ EXECD_QUEUES: 'default:1' });
    const job = await submit(other, { argv: ['sleep', '30'] });
    await waitRunning(other, job.id);
    const [viewer, events] = await Promise.all([connect(other, `/v1/jobs/${job.id}/stream`), connect(other, '/v1/events')]);
    const t0 = Date.now();
    await other.close();
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect((await viewer.closed).code).toBe(1001);
    expect((await events.closed).code).toBe(1001);
    // no new upgrade is taken
    const late = new WebSocket(wsUrl(other, '/v1/events'), { headers: AUTH });
    await new Promise((resolve) => late.once('error', resolve));
  });
});

describe('a slow viewer never holds the job or a fast viewer back', () => {
  // 16 MiB at a pace a fast reader keeps up with, far more than the kernel buffers of a reader that stopped
  const mib = 16;
  const paced = `i=0; while [ $i -lt ${mib} ]; do head -c 1048576 /dev/zero; sleep 0.01; i=$((i+1)); done`;

  it('a paused viewer (lag=wait, the default) gets every byte once it reads again, with bounded server memory; a fast viewer gets every byte meanwhile', async () => {
    const slowApp = await startJobsApp({ EXECD_QUEUES: 'default:1', EXECD_WS_MAX_BUFFER_BYTES: '262144' });
    try {
      const job = await submit(slowApp, { command: paced });
      const [fast, slow] = await Promise.all([
        connect(slowApp, `/v1/jobs/${job.id}/stream?encoding=binary`),
        connect(slowApp, `/v1/jobs/${job.id}/stream?encoding=base64`),
      ]);
      const socket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
      socket.pause(); // stops reading: the kernel buffers fill, then the server's send buffer
      const done = await settle(slowApp, job.id, 60_000);
      expect(done.state).toBe('succeeded'); // the job did not wait for the slow viewer
      // bounded while it does not read: its send buffer (plus a frame), never the 16 MiB it has yet to get
      // both viewers: each its send buffer, one frame past it and one read of the log held for it
      expect(slowApp.app.viewers.bufferedBytes).toBeLessThan(2 * 262_144 + (262_144 + 9) + 65_536 * 1.4 + 262_144 + 65_536);
      socket.resume();
      const f = reassemble((await fast.all()).frames, 'stdout');
      expect(f.gaps).toEqual([]);
      expect(f.bytes.equals(Buffer.alloc(mib * 1048576))).toBe(true);
      const { frames, code } = await slow.all();
      expect(code).toBe(1000);
      const s = reassemble(frames, 'stdout');
      expect(s.gaps).toEqual([]);
      expect(s.bytes.equals(Buffer.alloc(mib * 1048576))).toBe(true);
      expect(frames.at(-1)).toMatchObject({ type: 'exit', state: 'succeeded' });
    } finally {
      await slowApp.close();
    }
  });

  it('with lag=skip a paused viewer gets a gap and skips to the live edge; frames and gaps still cover every offset once', async () => {
    const slowApp = await startJobsApp({ EXECD_QUEUES: 'default:1', EXECD_WS_MAX_BUFFER_BYTES: '262144' });
    try {
      const job = await submit(slowApp, { command: paced });
      const slow = await connect(slowApp, `/v1/jobs/${job.id}/stream?encoding=base64&lag=skip`);
      const socket = (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
      socket.pause();
      const gaps0 = streamMetrics.gapsTotal;
      expect((await settle(slowApp, job.id, 60_000)).state).toBe('succeeded');
      expect(slowApp.app.viewers.bufferedBytes).toBeLessThan(4 * 262_144);
      socket.resume();
      const { frames, code } = await slow.all();
      expect(code).toBe(1000);
      const s = reassemble(frames, 'stdout');
      expect(s.gaps.length).toBeGreaterThanOrEqual(1);
      expect(streamMetrics.gapsTotal - gaps0).toBeGreaterThanOrEqual(s.gaps.length);
      expect(s.end).toBe(mib * 1048576); // contiguous to the end: frames + gaps cover every offset once
      expect(s.bytes.length).toBeLessThan(mib * 1048576);
      expect(frames.at(-1)).toMatchObject({ type: 'exit', state: 'succeeded' });
    } finally {
      await slowApp.close();
    }
  });
});
