import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitFrame, StateFrame } from '../../src/schemas/stream.js';
import { AUTH, TOKEN, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';
import { connect, reassemble, type Frame } from '../helpers/stream.js';
import { getJob, pattern, settle, startJobsApp, submit, waitRunning } from '../helpers/jobs.js';

/** The exit frame of a job whose output was kept whole. */
const UNTRUNCATED = { truncated: { stdout: false, stderr: false }, truncatedReason: { stdout: null, stderr: null } };

let t: TestApp & { dataDir: string };
const work = mkdtempSync(join(tmpdir(), 'execd-stream-'));
beforeAll(async () => {
  // A small memory part: replays read the spilled file too.
  t = await startJobsApp({ EXECD_QUEUES: 'default:8', EXECD_OUTPUT_MEMORY_BYTES: '65536' });
});
afterAll(async () => {
  await t.close();
  rmSync(work, { recursive: true, force: true });
});

let gates = 0;
/** A shell snippet that blocks until `open()` is called. */
function gate(): { wait: string; open(): void } {
  const file = join(work, `gate-${++gates}`);
  return { wait: `while [ ! -e '${file}' ]; do sleep 0.01; done`, open: () => writeFileSync(file, '') };
}

async function output(id: string, stream: 'stdout' | 'stderr' = 'stdout'): Promise<Buffer> {
  const res = await t.http.get(`/v1/jobs/${id}/output?stream=${stream}`).set(AUTH).buffer(true).parse((r, cb) => {
    const chunks: Buffer[] = [];
    r.on('data', (c: Buffer) => chunks.push(c));
    r.on('end', () => cb(null, Buffer.concat(chunks)));
  });
  expect(res.status).toBe(200);
  return res.body as Buffer;
}

const types = (frames: Frame[]) => frames.map((f) => f.type).filter((type, i, all) => i === 0 || type !== all[i - 1]);

describe('GET /v1/jobs/{id}/stream: replay, live, exit', () => {
  it('replays what was kept, then streams live, with the offsets of /output, then state, exit and close 1000', async () => {
    const g = gate();
    const job = await submit(t, {
      command: `yes 0123456789abcdef | head -c 200000; ${g.wait}; yes 0123456789abcdef | head -c 200000; echo oops >&2; exit 3`,
    });
    await waitFor(async () => (await getJob(t, job.id)).outputBytes.stdout === 200_000);
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    // the replay: all 200000 kept bytes (memory and spilled file) while the job waits at its gate
    expect(await waitFor(() => reassemble(viewer.frames, 'stdout').end === 200_000)).toBe(true);
    expect(viewer.frames.find((f) => f.type === 'output')).toMatchObject({ stream: 'stdout', offset: 0 });
    g.open(); // then live output, from offset 200000 on
    const { frames, code } = await viewer.all();
    expect(code).toBe(1000);
    expect(StateFrame.parse(frames[0])).toMatchObject({ state: 'running', pid: expect.any(Number) });
    expect(types(frames).slice(-2)).toEqual(['state', 'exit']);
    expect(StateFrame.parse(frames.at(-2))).toMatchObject({ state: 'failed' });
    expect(ExitFrame.parse(frames.at(-1))).toEqual({ type: 'exit', state: 'failed', exitCode: 3, signal: null, returncode: 3, timedOut: false, ...UNTRUNCATED });
    const stdout = reassemble(frames, 'stdout');
    expect(stdout.gaps).toEqual([]);
    expect(stdout.bytes.equals(Buffer.concat([pattern(200_000), pattern(200_000)]))).toBe(true);
    expect(stdout.bytes.equals(await output(job.id))).toBe(true);
    expect(reassemble(frames, 'stderr').bytes.toString()).toBe('oops\n');
    expect(frames.some((f) => f.type === 'output' && f.offset === 200_000)).toBe(true);
  });

  it('a late viewer after the end gets everything kept, the final state and exit', async () => {
    const job = await submit(t, { command: 'printf hello; printf err >&2' });
    await settle(t, job.id);
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    const { frames, code } = await viewer.all();
    expect(code).toBe(1000);
    expect(reassemble(frames, 'stdout').bytes.toString()).toBe('hello');
    expect(reassemble(frames, 'stderr').bytes.toString()).toBe('err');
    expect(frames.filter((f) => f.type === 'state')).toEqual([expect.objectContaining({ state: 'succeeded' })]);
    expect(frames.at(-1)).toEqual({ type: 'exit', state: 'succeeded', exitCode: 0, signal: null, returncode: 0, timedOut: false, ...UNTRUNCATED });
  });

  it('a queued job: state queued, then running, then the output', async () => {
    const g = gate();
    const blockers = await Promise.all(Array.from({ length: 8 }, () => submit(t, { command: g.wait })));
    const job = await submit(t, { argv: ['echo', 'hi'] });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    await viewer.next((f) => f.type === 'state');
    g.open();
    const { frames } = await viewer.all();
    expect(frames.filter((f) => f.type === 'state').map((f) => f.state)).toEqual(['queued', 'running', 'succeeded']);
    expect(reassemble(frames, 'stdout').bytes.toString()).toBe('hi\n');
    await Promise.all(blockers.map((b) => settle(t, b.id)));
  });

  it('the exit frame: success, failure, a signal sent over the socket, and a timeout', async () => {
    const ok = await submit(t, { argv: ['true'] });
    const fail = await submit(t, { command: 'exit 7' });
    const slow = await submit(t, { argv: ['sleep', '30'] });
    const timeout = await submit(t, { argv: ['sleep', '30'], timeoutMs: 200, killGraceMs: 100 });
    const exitOf = async (id: string, onOpen?: (v: Awaited<ReturnType<typeof connect>>) => Promise<void>) => {
      const v = await connect(t, `/v1/jobs/${id}/stream`);
      await onOpen?.(v);
      const { frames, code } = await v.all();
      expect(code).toBe(1000);
      return ExitFrame.parse(frames.at(-1));
    };
    const killed = exitOf(slow.id, async (v) => {
      await v.next((f) => f.type === 'state' && f.state === 'running');
      v.send({ type: 'signal', signal: 'SIGKILL' });
    });
    expect(await exitOf(ok.id)).toEqual({ type: 'exit', state: 'succeeded', exitCode: 0, signal: null, returncode: 0, timedOut: false, ...UNTRUNCATED });
    expect(await exitOf(fail.id)).toEqual({ type: 'exit', state: 'failed', exitCode: 7, signal: null, returncode: 7, timedOut: false, ...UNTRUNCATED });
    expect(await killed).toEqual({ type: 'exit', state: 'failed', exitCode: null, signal: 'SIGKILL', returncode: -9, timedOut: false, ...UNTRUNCATED });
    expect(await exitOf(timeout.id)).toEqual({ type: 'exit', state: 'timed_out', exitCode: null, signal: 'SIGTERM', returncode: -15, timedOut: true, ...UNTRUNCATED });
  });

  it('a job canceled while queued: exit with nulls', async () => {
    const g = gate();
    const blockers = await Promise.all(Array.from({ length: 8 }, () => submit(t, { command: g.wait })));
    const job = await submit(t, { argv: ['true'] });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    await viewer.next((f) => f.type === 'state');
    await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH).expect(200);
    const { frames, code } = await viewer.all();
    expect(code).toBe(1000);
    expect(frames.at(-1)).toEqual({ type: 'exit', state: 'canceled', exitCode: null, signal: null, returncode: null, timedOut: false, ...UNTRUNCATED });
    g.open();
    await Promise.all(blockers.map((b) => settle(t, b.id)));
  });
});

describe('offsets: resume exactly, UTF-8 never split, base64', () => {
  // 1-, 2-, 3- and 4-byte characters
  const text = 'a é € 𝄞 ñ 中文 — ✓\n'.repeat(10_000); // 320000 bytes: 64 KiB frames end inside characters
  const bytes = Buffer.from(text);

  it('resuming at the end of what a viewer got misses nothing and repeats nothing (utf8 and base64)', async () => {
    const job = await submit(t, { argv: ['cat'], stdin: text });
    await settle(t, job.id);
    for (const encoding of ['utf8', 'base64'] as const) {
      // Take the first few frames, drop the connection, resume at the end of the last one.
      const first = await connect(t, `/v1/jobs/${job.id}/stream?encoding=${encoding}`);
      await first.next((f) => f.type === 'exit');
      const head = first.frames.filter((f) => f.type === 'output' && f.stream === 'stdout').slice(0, 2);
      const got = reassemble(head, 'stdout');
      expect(got.end).toBeGreaterThan(0);
      const second = await connect(t, `/v1/jobs/${job.id}/stream?encoding=${encoding}&stdoutOffset=${got.end}`);
      const rest = reassemble((await second.all()).frames, 'stdout', got.end);
      expect(Buffer.concat([got.bytes, rest.bytes]).equals(bytes)).toBe(true);
      if (encoding === 'base64') expect(head.every((f) => f.encoding === 'base64')).toBe(true);
      else expect(head.every((f) => f.encoding === undefined)).toBe(true);
    }
  });

  it('any byte offset resumes exactly in base64, and every character boundary in utf8', async () => {
    const job = await submit(t, { argv: ['cat'], stdin: text.slice(0, 34) });
    await settle(t, job.id);
    const small = Buffer.from(text.slice(0, 34));
    for (let k = 0; k <= small.length; k += 3) {
      const v = await connect(t, `/v1/jobs/${job.id}/stream?encoding=base64&offset=${k}`);
      expect(reassemble((await v.all()).frames, 'stdout', k).bytes.equals(small.subarray(k))).toBe(true);
    }
    for (let k = 0; k <= small.length; k++) {
      if (k < small.length && (small[k]! & 0xc0) === 0x80) continue; // not a character boundary
      const v = await connect(t, `/v1/jobs/${job.id}/stream?offset=${k}`);
      expect(reassemble((await v.all()).frames, 'stdout', k).bytes.equals(small.subarray(k))).toBe(true);
    }
  });

  it('a character written in two pieces arrives whole, at the offset of its first byte', async () => {
    const g = gate();
    // "x€" with the euro sign (e2 82 ac) cut after its second byte
    const job = await submit(t, { command: `printf 'x\\342\\202'; ${g.wait}; printf '\\254y'` });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    const x = await viewer.next((f) => f.type === 'output');
    expect(x).toEqual({ type: 'output', stream: 'stdout', offset: 0, data: 'x' });
    g.open();
    const { frames } = await viewer.all();
    const outs = frames.filter((f) => f.type === 'output');
    expect(outs).toEqual([x, { type: 'output', stream: 'stdout', offset: 1, data: '€y' }]);
  });

  it('a stream that ends inside a character gets the held bytes as U+FFFD, at their offset', async () => {
    const job = await submit(t, { command: `printf 'ok\\342\\202'` });
    await settle(t, job.id);
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    const outs = (await viewer.all()).frames.filter((f) => f.type === 'output');
    expect(outs.map((f) => [f.offset, f.data])).toEqual([
      [0, 'ok'],
      [2, '\ufffd'],
    ]);
  });

  it('a stdoutOffset past the end of a finished stream is a 400 before the upgrade; a shared offset past a short stream is nothing to replay', async () => {
    const job = await submit(t, { argv: ['echo', 'hi'] });
    await settle(t, job.id);
    const res = await t.http.get(`/v1/jobs/${job.id}/stream?stdoutOffset=99`).set(AUTH);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'VALIDATION_FAILED', end: 3, stream: 'stdout' });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream?offset=2`);
    const { frames } = await viewer.all();
    expect(reassemble(frames, 'stdout', 2).bytes.toString()).toBe('\n');
    expect(frames.filter((f) => f.type === 'output' && f.stream === 'stderr')).toEqual([]);
  });

  it('an offset ahead of a running stream waits for those bytes', async () => {
    const g = gate();
    const job = await submit(t, { command: `printf abc; ${g.wait}; printf defgh` });
    await waitRunning(t, job.id);
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream?stdoutOffset=5`);
    g.open();
    expect(reassemble((await viewer.all()).frames, 'stdout', 5).bytes.toString()).toBe('fgh');
  });
});

describe('fan-out', () => {
  it('50 viewers of one job receive identical bytes, equal to /output', async () => {
    const g = gate();
    const job = await submit(t, { command: `yes 0123456789abcdef | head -c 100000; ${g.wait}; yes 0123456789abcdef | head -c 400000` });
    await waitRunning(t, job.id);
    const viewers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => connect(t, `/v1/jobs/${job.id}/stream${i % 2 ? '?encoding=base64' : ''}`)),
    );
    expect(t.app.viewers.jobViewerCount).toBeGreaterThanOrEqual(50);
    g.open();
    const expected = await settle(t, job.id).then(() => output(job.id));
    expect(expected.length).toBe(500_000);
    for (const v of viewers) {
      const { frames, code } = await v.all();
      expect(code).toBe(1000);
      const got = reassemble(frames, 'stdout');
      expect(got.gaps).toEqual([]);
      expect(got.bytes.equals(expected)).toBe(true);
      expect(frames.at(-1)).toMatchObject({ type: 'exit', state: 'succeeded' });
    }
    await waitFor(() => t.app.viewers.jobViewerCount === 0);
  });
});

describe('stdin and signals over the socket', () => {
  it('stdin round trip through cat (utf8 frames, then eof)', async () => {
    const job = await submit(t, { argv: ['cat'], stdin: { stream: true } });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    await viewer.next((f) => f.type === 'state' && f.state === 'running');
    viewer.send({ type: 'stdin', data: 'hello ' });
    viewer.send({ type: 'stdin', data: 'wörld €\n' });
    await viewer.next((f) => f.type === 'output' && String(f.data).endsWith('\n'));
    viewer.send({ type: 'stdin', eof: true });
    const { frames } = await viewer.all();
    expect(reassemble(frames, 'stdout').bytes.toString()).toBe('hello wörld €\n');
    expect(frames.at(-1)).toMatchObject({ type: 'exit', state: 'succeeded', exitCode: 0 });
    expect(frames.some((f) => f.type === 'error')).toBe(false);
  });

  it('stdin in base64 on a base64 connection, data and eof in one frame; binary bytes come back exactly', async () => {
    const job = await submit(t, { argv: ['cat'], stdin: { stream: true } });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream?encoding=base64`);
    await viewer.next((f) => f.type === 'state' && f.state === 'running');
    const raw = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 10]);
    viewer.send({ type: 'stdin', data: raw.toString('base64'), eof: true });
    const { frames } = await viewer.all();
    expect(reassemble(frames, 'stdout').bytes.equals(raw)).toBe(true);
  });

  it('a lot of stdin to a child that reads slowly is taken in order, with back-pressure', async () => {
    const job = await submit(t, { command: 'sleep 0.3; wc -c', stdin: { stream: true } });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    await viewer.next((f) => f.type === 'state' && f.state === 'running');
    const chunk = 'x'.repeat(60_000);
    for (let i = 0; i < 40; i++) viewer.send({ type: 'stdin', data: chunk });
    viewer.send({ type: 'stdin', eof: true });
    const { frames } = await viewer.all();
    expect(reassemble(frames, 'stdout').bytes.toString().trim()).toBe(String(40 * 60_000));
    expect(frames.some((f) => f.type === 'error')).toBe(false);
  });

  it('invalid frames get error frames and the connection stays open', async () => {
    const g = gate();
    const job = await submit(t, { command: `${g.wait}; echo done` });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`);
    await viewer.next((f) => f.type === 'state');
    const errors = () => viewer.frames.filter((f) => f.type === 'error');
    viewer.ws.send('not json');
    viewer.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    viewer.send({ type: 'dance' });
    viewer.send({ type: 'signal', signal: 'SIGNOPE' });
    viewer.send({ type: 'stdin', data: 'x', extra: 1 });
    viewer.send({ type: 'stdin', data: 'x' }); // the job's stdin is not a stream
    await waitFor(() => errors().length === 6);
    expect(errors().map((f) => f.code)).toEqual(['VALIDATION_FAILED', 'VALIDATION_FAILED', 'VALIDATION_FAILED', 'VALIDATION_FAILED', 'VALIDATION_FAILED', 'CONFLICT']);
    expect(errors()[5]!.detail).toMatch(/stream/);
    g.open();
    const { frames, code } = await viewer.all();
    expect(code).toBe(1000);
    expect(reassemble(frames, 'stdout').bytes.toString()).toBe('done\n');
  });

  it('a client that keeps sending invalid frames is closed 1008; one over 64 KiB, 1009', async () => {
    const g = gate();
    const job = await submit(t, { command: g.wait });
    const spammer = await connect(t, `/v1/jobs/${job.id}/stream`);
    for (let i = 0; i < 40; i++) spammer.ws.send('nope');
    expect((await spammer.closed).code).toBe(1008);
    const big = await connect(t, `/v1/jobs/${job.id}/stream`);
    big.send({ type: 'stdin', data: 'x'.repeat(70_000) });
    expect((await big.closed).code).toBe(1009);
    g.open();
    await settle(t, job.id);
  });

  it('a signal or stdin for a job that is not running yet is a CONFLICT error frame', async () => {
    const g = gate();
    const blockers = await Promise.all(Array.from({ length: 8 }, () => submit(t, { command: g.wait })));
    const queued = await submit(t, { argv: ['true'] });
    const viewer = await connect(t, `/v1/jobs/${queued.id}/stream`);
    await viewer.next((f) => f.type === 'state');
    viewer.send({ type: 'signal', signal: 'SIGINT' });
    viewer.send({ type: 'stdin', eof: true });
    const err = await viewer.next((f) => f.type === 'error');
    expect(err).toMatchObject({ code: 'CONFLICT' });
    g.open();
    await viewer.all();
    await Promise.all(blockers.map((b) => settle(t, b.id)));
  });
});

describe('the token in a subprotocol', () => {
  it('bearer.<token> authenticates a client without headers and is echoed as the accepted subprotocol', async () => {
    const job = await submit(t, { argv: ['echo', 'hi'] });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`, { token: null, protocols: ['execd', `bearer.${TOKEN}`] });
    expect(viewer.ws.protocol).toBe(`bearer.${TOKEN}`);
    const { frames } = await viewer.all();
    expect(reassemble(frames, 'stdout').bytes.toString()).toBe('hi\n');
  });
});
