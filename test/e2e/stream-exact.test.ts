import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitFrame } from '../../src/schemas/stream.js';
import { TOKEN, type TestApp } from '../helpers/app.js';
import { connect, reassemble, refusal, type Frame } from '../helpers/stream.js';
import { rawGet, settle, startJobsApp, submit } from '../helpers/jobs.js';

/**
 * Issue 17: a viewer gets every byte the output log holds, in order, exactly once, however fast the job
 * writes; a gap frame only for bytes not held. The send buffer is at its smallest (16 KiB) and the memory
 * part of a log small, so a viewer is behind most of the time and catches up from the spilled file.
 */
let t: TestApp & { dataDir: string };
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:4', EXECD_WS_MAX_BUFFER_BYTES: '16384', EXECD_OUTPUT_MEMORY_BYTES: '65536' });
});
afterAll(async () => {
  await t.close();
});

async function output(id: string, stream: 'stdout' | 'stderr'): Promise<Buffer> {
  const res = await rawGet(t, `/v1/jobs/${id}/output?stream=${stream}`);
  expect(res.status).toBe(200);
  return res.body;
}

const outputs = (frames: Frame[]) => frames.filter((f) => f.type === 'output');

describe('a fast job and viewers that read at full speed', () => {
  it('binary frames: every byte of stdout and stderr exactly (= GET /output), offsets contiguous, no gap; state and exit stay JSON text', async () => {
    // 24 MB of random bytes on stdout, 3 MB on stderr, both written at memory speed
    const job = await submit(t, { command: 'head -c 24000000 /dev/urandom & head -c 3000000 /dev/urandom >&2; wait', maxOutputBytes: 30_000_000 });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream?encoding=binary`);
    const { frames, code } = await viewer.all();
    expect(code).toBe(1000);
    const stdout = reassemble(frames, 'stdout');
    const stderr = reassemble(frames, 'stderr');
    expect(stdout.gaps).toEqual([]);
    expect(stderr.gaps).toEqual([]);
    expect(stdout.bytes.length).toBe(24_000_000);
    expect(stderr.bytes.length).toBe(3_000_000);
    expect(stdout.bytes.equals(await output(job.id, 'stdout'))).toBe(true);
    expect(stderr.bytes.equals(await output(job.id, 'stderr'))).toBe(true);
    // every output frame came binary; the others were JSON text
    expect(outputs(frames).every((f) => f.encoding === 'binary')).toBe(true);
    expect(frames.filter((f) => f.type !== 'output').map((f) => f.type)).toEqual(expect.arrayContaining(['state', 'exit']));
    expect(ExitFrame.parse(frames.at(-1))).toMatchObject({ state: 'succeeded', truncated: { stdout: false, stderr: false } });
    // no frame over the send buffer's bound (16 KiB here)
    expect(Math.max(...outputs(frames).map((f) => (f.bytes as Buffer).length))).toBeLessThanOrEqual(16_384);
  });

  it('utf8: every line of seq exactly, no gap; and the same bytes over an HTTP follow', async () => {
    const job = await submit(t, { argv: ['seq', '1', '1500000'] }); // 10,888,896 bytes
    const [viewer, follow] = await Promise.all([connect(t, `/v1/jobs/${job.id}/stream`), rawGet(t, `/v1/jobs/${job.id}/output?follow=true`)]);
    const { frames, code } = await viewer.all();
    expect(code).toBe(1000);
    const got = reassemble(frames, 'stdout');
    expect(got.gaps).toEqual([]);
    const expected = await output(job.id, 'stdout');
    expect(expected.length).toBe(10_888_896);
    expect(got.bytes.equals(expected)).toBe(true);
    const followed = await follow;
    expect(followed.status).toBe(200);
    expect(followed.body.equals(expected)).toBe(true);
  });

  it('lag=skip is the only way to skip: the same kind of job gives a fast viewer no gap, and a paused lag=skip viewer gaps', async () => {
    const job = await submit(t, { command: 'i=0; while [ $i -lt 8 ]; do head -c 1048576 /dev/zero; sleep 0.02; i=$((i+1)); done' });
    const [fast, skipper] = await Promise.all([
      connect(t, `/v1/jobs/${job.id}/stream?encoding=binary`),
      connect(t, `/v1/jobs/${job.id}/stream?encoding=binary&lag=skip`),
    ]);
    const socket = (skipper.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    await settle(t, job.id);
    socket.resume();
    const f = reassemble((await fast.all()).frames, 'stdout');
    expect(f.gaps).toEqual([]);
    expect(f.bytes.equals(Buffer.alloc(8 * 1048576))).toBe(true);
    const s = reassemble((await skipper.all()).frames, 'stdout');
    expect(s.gaps.length).toBeGreaterThanOrEqual(1);
    expect(s.end).toBe(8 * 1048576);
  });
});

describe('gap frames: only for bytes not held', () => {
  it('past maxOutputBytes: a gap from the last byte kept to the last byte written, after the output and before exit (live and replay)', async () => {
    const job = await submit(t, { command: 'head -c 100000 /dev/zero; printf abc >&2', maxOutputBytes: 60_000 });
    const live = await connect(t, `/v1/jobs/${job.id}/stream?encoding=base64`);
    const { frames } = await live.all();
    await settle(t, job.id);
    const late = await connect(t, `/v1/jobs/${job.id}/stream?encoding=binary`);
    for (const all of [frames, (await late.all()).frames]) {
      const stdout = reassemble(all, 'stdout');
      expect(stdout.bytes.length).toBe(60_000);
      expect(stdout.gaps).toEqual([{ type: 'gap', stream: 'stdout', from: 60_000, to: 100_000 }]);
      expect(reassemble(all, 'stderr')).toMatchObject({ gaps: [], end: 3 });
      const gapAt = all.findIndex((f) => f.type === 'gap');
      expect(all.slice(gapAt + 1).some((f) => f.type === 'output' && f.stream === 'stdout')).toBe(false);
      expect(ExitFrame.parse(all.at(-1))).toMatchObject({ truncated: { stdout: true, stderr: false }, truncatedReason: { stdout: 'max_output', stderr: null } });
    }
    // a viewer starting past the bytes kept: the gap starts at its own offset; one past the end of what was written has none
    const past = await connect(t, `/v1/jobs/${job.id}/stream?offset=80000`);
    expect(reassemble((await past.all()).frames, 'stdout', 80_000).gaps).toEqual([{ type: 'gap', stream: 'stdout', from: 80_000, to: 100_000 }]);
    const beyond = await connect(t, `/v1/jobs/${job.id}/stream?offset=100000`);
    expect((await beyond.all()).frames.filter((f) => f.type === 'gap')).toEqual([]);
  });
});

describe('encoding=binary: client frames stay JSON text', () => {
  it('stdin data is base64; invalid base64 is refused naming the encoding', async () => {
    const job = await submit(t, { argv: ['cat'], stdin: { stream: true } });
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream?encoding=binary`);
    await viewer.next((f) => f.type === 'state' && f.state === 'running');
    viewer.send({ type: 'stdin', data: 'not base64!' });
    const refused = await viewer.next((f) => f.type === 'error');
    expect(refused).toMatchObject({ code: 'VALIDATION_FAILED' });
    expect(refused.detail).toMatch(/encoding=binary/);
    const raw = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 10]);
    viewer.send({ type: 'stdin', data: raw.toString('base64'), eof: true });
    const { frames, code } = await viewer.all();
    expect(code).toBe(1000);
    const got = reassemble(frames, 'stdout');
    expect(got.bytes.equals(raw)).toBe(true);
    expect(outputs(frames)).toEqual([expect.objectContaining({ encoding: 'binary', offset: 0 })]);
  });

  it('a bad lag or encoding is a 400 before the upgrade; good ones upgrade', async () => {
    const job = await submit(t, { argv: ['true'] });
    for (const query of ['lag=later', 'encoding=hex', 'lag=']) {
      const res = await refusal(t, `/v1/jobs/${job.id}/stream?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body).toMatchObject({ code: 'VALIDATION_FAILED' });
    }
    for (const query of ['lag=wait', 'lag=skip&encoding=binary']) {
      const v = await connect(t, `/v1/jobs/${job.id}/stream?${query}`);
      expect((await v.all()).code).toBe(1000);
    }
  });
});

describe('docs/websocket.md', () => {
  it("the binary frames snippet (ArrayBuffer, DataView) gets a job's exact bytes, run with Node's own WebSocket", async () => {
    const code = /## Binary frames[\s\S]*?```js\n([\s\S]*?)```/.exec(readFileSync(new URL('../../docs/websocket.md', import.meta.url), 'utf8'))![1]!;
    const tailBinary = new Function(`${code}; return tailBinary;`)() as (
      base: string, token: string, id: string, onBytes: (stream: string, bytes: Uint8Array) => void, onEnd: (exit: Frame) => void,
    ) => void;
    const job = await submit(t, { command: 'head -c 3000000 /dev/urandom; printf "é€" >&2' });
    const got: Record<string, Buffer[]> = { stdout: [], stderr: [] };
    const exit = await new Promise<Frame>((resolve) =>
      tailBinary(t.url, TOKEN, job.id, (stream, bytes) => got[stream]!.push(Buffer.from(bytes)), resolve),
    );
    expect(exit).toMatchObject({ type: 'exit', state: 'succeeded' });
    expect(Buffer.concat(got.stdout!).equals(await output(job.id, 'stdout'))).toBe(true);
    expect(Buffer.concat(got.stderr!).toString()).toBe('é€');
  });
});
