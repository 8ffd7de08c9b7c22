import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nativeUnavailableReason } from '../../src/runner/native-helper.js';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';
import { settle, startJobsApp, submit, waitRunning } from '../helpers/jobs.js';
import { connect, reassemble, type Client, type Frame } from '../helpers/stream.js';

/**
 * Commands on a pseudo-terminal (docs/tty.md): only the native spawner can give one; with child_process
 * a tty is refused with 422 SPAWN_FAILED (ENOTSUP), which the last block checks on every run of the suite.
 */
const skipReason = process.env.EXECD_SPAWNER === 'child_process' ? 'EXECD_SPAWNER=child_process' : nativeUnavailableReason();
const NATIVE = skipReason === null;
const onNative = `on the native spawner${NATIVE ? '' : ` (skipped: ${skipReason}; a tty needs the native spawner)`}`;

const dir = mkdtempSync(join(tmpdir(), 'execd-tty-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The text of a viewer's stdout so far. */
const screen = (viewer: Client) => reassemble(viewer.frames, 'stdout').bytes.toString();
/** The first output frame whose text has `text`: live frames carry the time they arrived. */
const until = (viewer: Client, text: string) => viewer.next((f) => f.type === 'output' && screen(viewer).includes(text));

describe.skipIf(!NATIVE)(`tty ${onNative}`, () => {
  let t: TestApp & { dataDir: string };
  beforeAll(async () => {
    t = await startJobsApp({ EXECD_QUEUES: 'default:8' });
  });
  afterAll(() => t.close());

  it('a sync run is on a terminal of the size asked: test -t, stty size, TERM, stderr merged into stdout', async () => {
    const command = 'for fd in 0 1 2; do test -t $fd && printf "tty$fd "; done; stty size; echo $TERM; echo err >&2';
    const res = await t.http.post('/v1/run').set(AUTH).send({ command, tty: { cols: 100, rows: 30 } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ stdout: 'tty0 tty1 tty2 30 100\r\nxterm-256color\r\nerr\r\n', stderr: '', returncode: 0 });
    // true: 80x24; the request's TERM wins
    const plain = await t.http.post('/v1/run').set(AUTH).send({ command: 'stty size; echo $TERM', tty: true, env: { TERM: 'vt100' } });
    expect(plain.body).toMatchObject({ stdout: '24 80\r\nvt100\r\n', returncode: 0 });
    // and without tty, no terminal at all
    const none = await t.http.post('/v1/run').set(AUTH).send({ command: 'test -t 0 || test -t 1 || echo none; echo $TERM' });
    expect(none.body).toMatchObject({ stdout: 'none\ndumb\n', returncode: 0 });
  });

  it('the process leads its own session, its terminal the controlling one; stdin bytes are typed at it', async () => {
    // read takes the typed line (echoed by the terminal); ps shows the session and the terminal
    const res = await t.http
      .post('/v1/run')
      .set(AUTH)
      .send({ command: 'read line; echo "got $line"; ps -o sid=,pgid=,tty= -p $$', tty: true, stdin: 'hello\n', timeoutMs: 10_000 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const [echo, got, ps] = (res.body.stdout as string).split('\r\n');
    expect([echo, got]).toEqual(['hello', 'got hello']);
    const [sid, pgid, tty] = ps!.trim().split(/\s+/);
    expect(Number(sid)).toBe(res.body.pid);
    expect(Number(pgid)).toBe(res.body.pid);
    expect(tty).toMatch(/^pts\/\d+$/);
  });

  it('python3 prints each line live on a terminal (0.2 s apart at the viewer), and all at its exit through a pipe', async () => {
    const argv = ['python3', '-c', 'import sys,time; [print(i) or time.sleep(0.2) for i in range(5)]'];
    const arrivals = async (body: object) => {
      const job = await submit(t, body);
      const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
      const first = await until(viewer, '0');
      const at0 = Date.now();
      const last = await until(viewer, '4');
      const gap = Date.now() - at0;
      await viewer.all();
      return { same: first === last, gap, text: screen(viewer) };
    };
    const live = await arrivals({ argv, tty: true });
    expect(live.text).toBe('0\r\n1\r\n2\r\n3\r\n4\r\n');
    expect(live.same).toBe(false);
    expect(live.gap).toBeGreaterThanOrEqual(500); // four sleeps of 0.2 s between them
    const piped = await arrivals({ argv });
    expect(piped.text).toBe('0\n1\n2\n3\n4\n');
    expect(piped.same).toBe(true); // block-buffered: one write at exit
  });

  it('a resize frame changes the terminal size (SIGWINCH), and typed lines reach the process in order', async () => {
    const job = await submit(t, { command: 'trap "echo winch" WINCH; stty size; read x; stty size', tty: { cols: 80, rows: 24 } });
    expect(job.spec.tty).toEqual({ cols: 80, rows: 24 });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    await until(viewer, '24 80');
    viewer.send({ type: 'resize', cols: 132, rows: 50 });
    await until(viewer, 'winch'); // the trap ran: the kernel sent SIGWINCH
    viewer.send({ type: 'stdin', data: '\n' });
    const { frames } = await viewer.all();
    // the typed newline's echo comes when the kernel's line discipline gets to it: before or after what the read let run
    expect(screen(viewer).split('\r\n')).toEqual(expect.arrayContaining(['24 80', 'winch', '50 132']));
    expect(screen(viewer).split('\r\n').filter(Boolean)).toEqual(['24 80', 'winch', '50 132']);
    expect(frames.at(-1)).toMatchObject({ type: 'exit', exitCode: 0 });
  });

  it('256 KiB typed at a terminal whose program reads late arrive whole and in order (a full terminal is waited for)', async () => {
    const job = await submit(t, { command: 'stty raw -echo; echo ready; sleep 0.5; head -c 262144 | sha256sum', tty: true });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    await until(viewer, 'ready');
    const chunks = Array.from({ length: 32 }, (_, i) => `${String(i).padStart(8, '0')}`.repeat(1024));
    for (const chunk of chunks) viewer.send({ type: 'stdin', data: chunk });
    const { frames } = await viewer.all();
    expect(frames.at(-1)).toMatchObject({ type: 'exit', exitCode: 0 });
    const sha = createHash('sha256').update(chunks.join('')).digest('hex');
    expect(screen(viewer)).toBe(`ready\n${sha}  -\n`);
  });

  it('Ctrl-C typed at the terminal (0x03) interrupts sleep 100: returncode -2', async () => {
    const job = await submit(t, { argv: ['sleep', '100'], tty: true });
    await waitRunning(t, job.id);
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    await viewer.next((f) => f.type === 'state' && f.state === 'running');
    viewer.send({ type: 'stdin', data: '\u0003' });
    const { frames } = await viewer.all();
    expect(frames.at(-1)).toMatchObject({ type: 'exit', signal: 'SIGINT', returncode: -2 });
    expect(screen(viewer)).toBe('^C');
  });

  it('stdin closed (eof) hangs the terminal up: SIGHUP, returncode -1', async () => {
    const job = await submit(t, { argv: ['sleep', '100'], tty: true });
    await waitRunning(t, job.id);
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    viewer.send({ type: 'stdin', eof: true });
    const { frames } = await viewer.all();
    expect(frames.at(-1)).toMatchObject({ type: 'exit', signal: 'SIGHUP', returncode: -1 });
  });

  it('a timeout still kills the whole session; a resize of a job without a terminal is a CONFLICT error frame', async () => {
    const job = await submit(t, { command: 'sleep 100 & sleep 100', tty: true, timeoutMs: 300, killGraceMs: 100 });
    expect(await settle(t, job.id)).toMatchObject({ state: 'timed_out' });
    const pipe = await submit(t, { command: 'sleep 5', stdin: { stream: true } });
    await waitRunning(t, pipe.id);
    const viewer = await connect(t, `/v1/jobs/${pipe.id}/stream`);
    viewer.send({ type: 'resize', cols: 10, rows: 10 });
    const error = await viewer.next((f: Frame) => f.type === 'error');
    expect(error).toMatchObject({ code: 'CONFLICT', detail: expect.stringMatching(/no terminal/) });
    viewer.send({ type: 'resize', cols: 0, rows: 10 });
    expect(await viewer.next((f: Frame) => f.type === 'error' && f.code === 'VALIDATION_FAILED')).toBeTruthy();
    viewer.send({ type: 'signal', signal: 'SIGKILL' });
    await viewer.all();
  });
});

describe('tty and the command policy', () => {
  let t: TestApp;
  beforeAll(async () => {
    const file = join(dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ rules: [{ name: 'no-terminal', executables: ['echo'] }, { name: 'terminal', executables: ['tty'], tty: true }] }));
    t = await startApp({ EXECD_POLICY_FILE: file });
  });
  afterAll(() => t.close());

  it('a rule without "tty": true refuses a terminal with 403 naming the rule; one with it allows it', async () => {
    const refused = await t.http.post('/v1/run').set(AUTH).send({ argv: ['echo', 'hi'], tty: true });
    expect(refused.status).toBe(403);
    expect(refused.body).toMatchObject({ code: 'COMMAND_NOT_ALLOWED', rule: 'no-terminal' });
    expect(refused.body.reasons).toContain('rule "no-terminal": a terminal ("tty") is not allowed (the rule has no "tty: true")');
    const job = await t.http.post('/v1/jobs').set(AUTH).send({ argv: ['echo', 'hi'], tty: { cols: 10, rows: 10 } });
    expect(job.status).toBe(403);
    expect((await t.http.post('/v1/run').set(AUTH).send({ argv: ['echo', 'hi'] })).status).toBe(200);
    const allowed = await t.http.post('/v1/run').set(AUTH).send({ argv: ['tty'], tty: true });
    if (NATIVE) expect(allowed.body).toMatchObject({ stdout: expect.stringMatching(/^\/dev\/pts\/\d+\r\n$/), returncode: 0 });
    else expect(allowed.body).toMatchObject({ code: 'SPAWN_FAILED', errno: 'ENOTSUP' });
  });
});

describe('tty with the child_process spawner', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp({ EXECD_SPAWNER: 'child_process' });
  });
  afterAll(() => t.close());

  it('is refused with 422 SPAWN_FAILED (errno ENOTSUP) for a run and at a job\'s submission; a bad size is a 400', async () => {
    for (const path of ['/v1/run', '/v1/jobs']) {
      const res = await t.http.post(path).set(AUTH).send({ argv: ['true'], tty: true });
      expect(res.status, JSON.stringify(res.body)).toBe(422);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ code: 'SPAWN_FAILED', errno: 'ENOTSUP', detail: expect.stringMatching(/needs the native spawner/) });
    }
    const bad = await t.http.post('/v1/run').set(AUTH).send({ argv: ['true'], tty: { cols: 0, rows: 24 } });
    expect(bad.status).toBe(400);
    expect((await t.http.post('/v1/jobs').set(AUTH).send({ argv: ['true'] })).status).toBe(202);
  });
});
