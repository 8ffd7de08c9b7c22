import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:http';
import { build } from 'esbuild';
import { WebSocketServer } from 'ws';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { ExecdClient, ExecdError, parseBinaryFrame, type JobStreamEvent, type OutputEvent } from '../../src/client/index.js';
import { ROOT } from '../helpers/server.js';
import { startApp, TOKEN, type TestApp } from '../helpers/app.js';
import { dropProxy } from './cli-helpers.js';

// The typed client (src/client) against a real app, on the suite's backend (EXECD_TEST_QUEUE_BACKEND=redis too).

let t: TestApp;
let client: ExecdClient;

beforeAll(async () => {
  t = await startApp({ EXECD_KILL_GRACE_MS: '300' });
  client = new ExecdClient({ url: `${t.url}/`, token: TOKEN });
});
afterAll(() => t.close());

const SCRIPT = 'for i in $(seq 1 25); do echo out $i; echo err $i >&2; sleep 0.02; done; exit 6';
const lines = (prefix: string) => Array.from({ length: 25 }, (_, i) => `${prefix} ${i + 1}\n`).join('');

/** The bytes of each stream from a sequence of events, checking that each output starts where the last one ended. */
function collect(events: JobStreamEvent[], from = { stdout: 0, stderr: 0 }) {
  const at = { ...from };
  const parts = { stdout: [] as Uint8Array[], stderr: [] as Uint8Array[] };
  for (const ev of events.filter((e): e is OutputEvent => e.type === 'output')) {
    expect(ev.offset).toBe(at[ev.stream]);
    at[ev.stream] += ev.data.length;
    parts[ev.stream].push(ev.data);
  }
  return { stdout: Buffer.concat(parts.stdout).toString(), stderr: Buffer.concat(parts.stderr).toString() };
}

describe('jobs.stream (WebSocket)', () => {
  test('resumes by offset after dropped connections: every byte of both streams once, in order, then exit', async () => {
    const proxy = await dropProxy(t.url);
    const dir = mkdtempSync(join(tmpdir(), 'execd-client-'));
    try {
      const viaProxy = new ExecdClient({ url: proxy.url, token: TOKEN });
      // The job waits for the test's go-ahead after each part, so that every drop happens while it runs.
      const part = (from: number, to: number) => `for i in $(seq ${from} ${to}); do echo out $i; echo err $i >&2; done`;
      const waitFor = (name: string) => `while [ ! -e ${dir}/${name} ]; do sleep 0.02; done`;
      const job = await viaProxy.jobs.submit({ command: `${part(1, 10)}; ${waitFor('a')}; ${part(11, 25)}; ${waitFor('b')}; exit 6` });
      const events: JobStreamEvent[] = [];
      for await (const ev of viaProxy.jobs.stream(job.id)) {
        events.push(ev);
        const got = collect(events).stderr;
        if (ev.type === 'output' && got.endsWith('err 10\n') && !existsSync(join(dir, 'a'))) {
          proxy.drop();
          writeFileSync(join(dir, 'a'), '');
        } else if (ev.type === 'output' && got.endsWith('err 25\n') && !existsSync(join(dir, 'b'))) {
          proxy.drop();
          writeFileSync(join(dir, 'b'), '');
        }
      }
      expect(collect(events)).toEqual({ stdout: lines('out'), stderr: lines('err') });
      expect(events.at(-1)).toMatchObject({ type: 'exit', state: 'failed', exitCode: 6, returncode: 6 });
      expect(proxy.accepted()).toBeGreaterThanOrEqual(4); // the submit, the stream, and a stream after each drop
    } finally {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a consumer slower than the job costs reconnections, not memory: past maxBufferedBytes the stream pauses and resumes exactly', async () => {
    const proxy = await dropProxy(t.url);
    try {
      const viaProxy = new ExecdClient({ url: proxy.url, token: TOKEN });
      const job = await viaProxy.jobs.submit({ argv: ['seq', '1', '200000'] }); // 1.3 MB
      const events: JobStreamEvent[] = [];
      for await (const ev of viaProxy.jobs.stream(job.id, { maxBufferedBytes: 64 << 10 })) {
        events.push(ev);
        if (ev.type === 'output') await new Promise((r) => setTimeout(r, 2));
      }
      expect(collect(events).stdout).toBe(Array.from({ length: 200_000 }, (_, i) => `${i + 1}\n`).join(''));
      expect(events.at(-1)).toMatchObject({ type: 'exit', exitCode: 0 });
      expect(proxy.accepted()).toBeGreaterThan(2); // the submit, the first stream, and at least one resumption
    } finally {
      await proxy.close();
    }
  });

  test('starts at the given offsets; only the streams asked for; base64 frames give the same bytes', async () => {
    const job = await client.jobs.submit({ command: "printf 'abc\\000\\377def'; printf 'XYZ' >&2" });
    await client.jobs.wait(job.id, { timeoutMs: 10_000 });
    const from = { stdout: 2, stderr: 1 };
    for (const encoding of ['binary', 'base64'] as const) {
      const events: JobStreamEvent[] = [];
      for await (const ev of client.jobs.stream(job.id, { offsets: from, encoding })) events.push(ev);
      expect(collect(events, from)).toEqual({ stdout: 'c\0\ufffddef', stderr: 'YZ' });
      const bytes = Buffer.concat(events.flatMap((e) => (e.type === 'output' && e.stream === 'stdout' ? [e.data] : [])));
      expect(bytes).toEqual(Buffer.from([0x63, 0, 0xff, 0x64, 0x65, 0x66]));
      expect(events.at(-1)).toMatchObject({ type: 'exit', exitCode: 0 });
    }
    const onlyErr: JobStreamEvent[] = [];
    for await (const ev of client.jobs.stream(job.id, { streams: ['stderr'] })) onlyErr.push(ev);
    expect(onlyErr.filter((e) => e.type === 'output').map((e) => (e as OutputEvent).stream)).toEqual(['stderr']);
  });

  test('bytes the server did not keep (past maxOutputBytes) are one gap, then exit', async () => {
    const job = await client.jobs.submit({ command: 'head -c 100 /dev/zero; echo done >&2', maxOutputBytes: 10 });
    const events: JobStreamEvent[] = [];
    for await (const ev of client.jobs.stream(job.id)) events.push(ev);
    expect(collect(events)).toEqual({ stdout: '\0'.repeat(10), stderr: 'done\n' });
    const gaps = events.filter((e) => e.type === 'gap');
    expect(gaps).toEqual([{ type: 'gap', stream: 'stdout', from: 10, to: 100 }]);
    expect(events.at(-1)).toMatchObject({ type: 'exit', exitCode: 0, truncated: { stdout: true, stderr: false } });
  });

  test('an unknown job is an ExecdError 404 (the refused handshake asked again over HTTP); aborting ends the iterator', async () => {
    const err = await (async () => {
      for await (const _ of client.jobs.stream('no-such-job')) return null;
    })().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExecdError);
    expect(err).toMatchObject({ status: 404, code: 'NOT_FOUND' });

    const job = await client.jobs.submit({ argv: ['sh', '-c', 'echo up; sleep 30'] });
    const abort = new AbortController();
    const seen: JobStreamEvent[] = [];
    for await (const ev of client.jobs.stream(job.id, { signal: abort.signal })) {
      seen.push(ev);
      if (ev.type === 'output') abort.abort();
    }
    expect(collect(seen).stdout).toBe('up\n');
    expect(seen.some((e) => e.type === 'exit')).toBe(false);
    expect((await client.jobs.cancel(job.id)).state).toBe('canceled');
  });
});

describe('jobs.follow (HTTP)', () => {
  test('one stream over HTTP follow, resumed after a dropped connection, then exit from the job', async () => {
    const proxy = await dropProxy(t.url);
    const dir = mkdtempSync(join(tmpdir(), 'execd-client-'));
    try {
      const viaProxy = new ExecdClient({ url: proxy.url, token: TOKEN });
      const job = await viaProxy.jobs.submit({ command: `${SCRIPT.replace('; exit 6', '')}; while [ ! -e ${dir}/go ]; do sleep 0.02; done; exit 6` });
      const events: JobStreamEvent[] = [];
      for await (const ev of viaProxy.jobs.follow(job.id, { stream: 'stderr' })) {
        events.push(ev);
        if (collect(events).stderr.endsWith('err 25\n') && !existsSync(join(dir, 'go'))) {
          proxy.drop();
          writeFileSync(join(dir, 'go'), '');
        }
      }
      expect(existsSync(join(dir, 'go'))).toBe(true);
      expect(collect(events).stderr).toBe(lines('err'));
      expect(events.at(-1)).toMatchObject({ type: 'exit', state: 'failed', exitCode: 6 });
      expect(proxy.accepted()).toBeGreaterThanOrEqual(3);
    } finally {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the rest of the API', () => {
  test('events() yields a job\'s lifecycle', async () => {
    const abort = new AbortController();
    const events = client.events({ signal: abort.signal });
    const first = events.next(); // connects
    await new Promise((r) => setTimeout(r, 200));
    const job = await client.jobs.submit({ argv: ['true'] });
    const types: string[] = [];
    for (let ev = await first; !ev.done; ev = await events.next()) {
      if ('job' in ev.value && ev.value.job.id === job.id) types.push(ev.value.type);
      if (types.includes('finished')) break;
    }
    abort.abort();
    expect(types).toEqual(['queued', 'started', 'finished']);
  });

  test('run, subprocess, jobs.wait/output/signal/remove, info, queues, policy, processes', async () => {
    const run = await client.run({ argv: ['sh', '-c', 'echo hi; exit 3'] });
    expect(run).toMatchObject({ exitCode: 3, stdout: 'hi\n' });
    expect(await client.subprocess.getstatusoutput('echo x; exit 3')).toEqual([3, 'x']);
    expect(await client.subprocess.getoutput('echo y')).toBe('y');
    expect(await client.subprocess.call({ args: ['false'] })).toBe(1);
    expect(await client.subprocess.check_output({ args: ['echo', 'z'], text: true })).toBe('z\n');
    expect((await client.subprocess.run({ args: 'exit 2', shell: true })).returncode).toBe(2);

    const job = await client.jobs.submit({ command: 'trap "echo term; exit 9" USR1; echo go; sleep 20 & wait' }, { idempotencyKey: 'cli-test-1' });
    expect((await client.jobs.submit({ command: 'trap "echo term; exit 9" USR1; echo go; sleep 20 & wait' }, { idempotencyKey: 'cli-test-1' })).id).toBe(job.id);
    for await (const ev of client.jobs.stream(job.id)) if (ev.type === 'output') break; // it runs, its trap is set
    await client.jobs.signal(job.id, 'SIGUSR1');
    const done = await client.jobs.wait(job.id, { timeoutMs: 10_000 });
    expect(done.result).toMatchObject({ exitCode: 9 });
    const out = await client.jobs.output(job.id, { offset: 1 });
    expect({ data: Buffer.from(out.data).toString(), offset: out.offset, end: out.end }).toEqual({ data: 'o\nterm\n', offset: 1, end: 8 });
    await client.jobs.remove(job.id);
    await expect(client.jobs.get(job.id)).rejects.toMatchObject({ status: 404, code: 'NOT_FOUND' });

    expect((await client.info()).pid).toBe(process.pid);
    expect((await client.queues()).map((q) => q.name)).toContain('default');
    expect(await client.policy.explain({ argv: ['ls'] })).toMatchObject({ allowed: true });
    expect((await client.processes({ pgid: process.pid })).items.every((p) => p.pgid === process.pid)).toBe(true);
    expect((await client.jobs.list({ limit: 1 })).items.length).toBeLessThanOrEqual(1);
  });

  test('errors: the problem as ExecdError (status, code, detail); no server at all is status 0 UNREACHABLE', async () => {
    await expect(client.run({ argv: [] } as never)).rejects.toMatchObject({ name: 'ExecdError', status: 400, code: 'VALIDATION_FAILED' });
    const wrongToken = new ExecdClient({ url: t.url, token: 'not-the-token-0123456789' });
    await expect(wrongToken.info()).rejects.toMatchObject({ status: 401, code: 'UNAUTHORIZED', refused: true });
    const proxy = await dropProxy(t.url);
    await proxy.close();
    const nobody = new ExecdClient({ url: proxy.url, token: TOKEN });
    const err = await nobody.info().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExecdError);
    expect(err).toMatchObject({ status: 0, code: 'UNREACHABLE', unavailable: true });
    expect((err as ExecdError).detail).toContain('ECONNREFUSED');
  });
});

describe('labels, retries and delayed starts', () => {
  test('jobs.list({label}) ANDs its labels (an object or k=v strings); events({label}) yields only those jobs', async () => {
    const run = `r${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const abort = new AbortController();
    const events = client.events({ signal: abort.signal, label: { run, team: 'web' } });
    const first = events.next(); // connects
    await new Promise((r) => setTimeout(r, 200));
    const db = await client.jobs.submit({ argv: ['true'], labels: { run, team: 'db' } });
    const web = await client.jobs.submit({ argv: ['true'], labels: { run, team: 'web', expr: 'a=b' } });
    const seen: string[] = [];
    for (let ev = await first; !ev.done; ev = await events.next()) {
      if ('job' in ev.value) seen.push(`${ev.value.type} ${ev.value.job.id}`);
      if (seen.includes(`finished ${web.id}`)) break;
    }
    abort.abort();
    expect(seen).toEqual([`queued ${web.id}`, `started ${web.id}`, `finished ${web.id}`]);
    await client.jobs.wait(db.id, { timeoutMs: 10_000 });
    const ids = async (label: Parameters<typeof client.jobs.list>[0]) => (await client.jobs.list(label)).items.map((j) => j.id).sort();
    expect(await ids({ label: { run } })).toEqual([db.id, web.id].sort());
    expect(await ids({ label: [`run=${run}`, 'team=web'] })).toEqual([web.id]);
    expect(await ids({ label: `run=${run}`, state: 'succeeded', limit: 1 })).toHaveLength(1);
    expect(await ids({ label: { run, expr: 'a=b' } })).toEqual([web.id]);
    expect(await ids({ label: { run, team: 'ops' } })).toEqual([]);
    await expect(client.jobs.list({ label: 'no-equals' })).rejects.toMatchObject({ status: 400, code: 'VALIDATION_FAILED' });
  });

  test('a retried job: attempts in the Job, one output; a delayed job is scheduled with runAt until canceled', async () => {
    const job = await client.jobs.submit({ command: 'echo try; exit 3', retry: { attempts: 2, backoffMs: 50, backoff: 'fixed' } });
    const done = await client.jobs.wait(job.id, { timeoutMs: 10_000 });
    expect(done).toMatchObject({ state: 'failed', attempt: 2, maxAttempts: 2, result: { exitCode: 3 } });
    expect(done.attempts.map((a) => [a.attempt, a.state, a.result?.exitCode, a.output.stdout])).toEqual([[1, 'failed', 3, 0], [2, 'failed', 3, 4]]);
    expect(Buffer.from((await client.jobs.output(job.id)).data).toString()).toBe('try\ntry\n');

    const later = await client.jobs.submit({ argv: ['true'], delayMs: 30_000 });
    expect(later.state).toBe('scheduled');
    expect(Date.parse(later.runAt!) - Date.now()).toBeGreaterThan(20_000);
    expect((await client.jobs.list({ state: 'scheduled' })).items.map((j) => j.id)).toContain(later.id);
    expect(await client.jobs.cancel(later.id)).toMatchObject({ state: 'canceled', attempt: 0 });
    expect((await client.info()).node).toBe(done.node);

    // A stream opened while the job is scheduled waits for it, then has its output and exit.
    const soon = await client.jobs.submit({ command: 'echo late', delayMs: 300 });
    const seen: string[] = [];
    for await (const ev of client.jobs.stream(soon.id)) seen.push(ev.type === 'output' ? Buffer.from(ev.data).toString() : ev.type === 'state' ? ev.state : ev.type);
    expect(seen.filter((e) => e !== 'queued' && e !== 'running' && e !== 'scheduled' && e !== 'succeeded')).toEqual(['late\n', 'exit']);
  });
});

describe('the client alone', () => {
  test('binary frames: stream byte, uint64 big-endian offset, then the bytes', () => {
    const frame = new Uint8Array([2, 0, 0, 0, 1, 0, 0, 0, 5, 0x68, 0x69]);
    const ev = parseBinaryFrame(frame);
    expect({ ...ev, data: [...ev.data] }).toEqual({ type: 'output', stream: 'stderr', offset: 2 ** 32 + 5, data: [0x68, 0x69] });
    expect(() => parseBinaryFrame(new Uint8Array([3, 0, 0, 0, 0, 0, 0, 0, 0]))).toThrow(ExecdError);
  });

  test('against a scripted server: overlapping frames trimmed, the resume asks the right offsets, a hole is a gap; base64 where binary is refused', async () => {
    const asked: Record<string, string>[] = [];
    const frame = (stream: 1 | 2, offset: number, data: string) => {
      const b = Buffer.alloc(9 + data.length);
      b[0] = stream;
      b.writeBigUInt64BE(BigInt(offset), 1);
      b.write(data, 9, 'latin1');
      return b;
    };
    const wss = new WebSocketServer({ noServer: true });
    const http = createServer((req, res) => {
      // The probe after a refused handshake: this server has no binary frames.
      res.writeHead(400, { 'content-type': 'application/problem+json' });
      res.end(JSON.stringify({ status: 400, code: 'VALIDATION_FAILED', detail: 'encoding: invalid option', errors: [{ in: 'querystring', path: '/encoding' }] }));
    });
    http.on('upgrade', (req, socket, head) => {
      const query = Object.fromEntries(new URL(req.url!, 'http://x').searchParams);
      asked.push({ ...query, authorization: req.headers.authorization ?? '', subprotocol: req.headers['sec-websocket-protocol'] ?? '' });
      if (query.encoding === 'binary' && req.url!.includes('/old/')) return socket.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n');
      wss.handleUpgrade(req, socket, head, (ws) => {
        if (req.url!.includes('/old/')) {
          ws.send(JSON.stringify({ type: 'output', stream: 'stdout', offset: 0, encoding: 'base64', data: Buffer.from([0, 0xff]).toString('base64') }));
        } else if (asked.length === 1) {
          ws.send(frame(1, 0, 'hello'));
          ws.send(frame(1, 3, 'lo wor')); // bytes 3..9: 3..5 came already
          setTimeout(() => ws.terminate(), 50); // a drop, no close frame
          return;
        } else {
          ws.send(frame(1, 7, 'orld')); // 7..11: only 9..11 are new
          ws.send(frame(2, 0, 'E'));
          ws.send(frame(1, 14, '!')); // 11..14 never came: a gap
        }
        ws.send(JSON.stringify({ type: 'exit', state: 'succeeded', exitCode: 0, signal: null, returncode: 0, timedOut: false }));
        ws.close(1000);
      });
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    try {
      // A token a subprotocol cannot carry (openssl rand -base64): Node sends it as a header.
      const token = 'tok/with+base64=0123456789';
      const fake = new ExecdClient({ url: `http://127.0.0.1:${(http.address() as { port: number }).port}`, token });
      const show = (ev: JobStreamEvent) => (ev.type === 'output' ? `${ev.stream}@${ev.offset}:${Buffer.from(ev.data).toString('latin1')}` : ev.type === 'gap' ? `gap ${ev.stream} ${ev.from}-${ev.to}` : ev.type);
      const events: string[] = [];
      for await (const ev of fake.jobs.stream('new')) events.push(show(ev));
      expect(events).toEqual(['stdout@0:hello', 'stdout@5: wor', 'stdout@9:ld', 'stderr@0:E', 'gap stdout 11-14', 'stdout@14:!', 'exit']);
      expect(asked.map((q) => [q.encoding, q.stdoutOffset, q.stderrOffset])).toEqual([['binary', '0', '0'], ['binary', '9', '0']]);
      expect(asked.map((q) => [q.authorization, q.subprotocol])).toEqual([[`Bearer ${token}`, ''], [`Bearer ${token}`, '']]);

      const old: string[] = [];
      for await (const ev of fake.jobs.stream('old')) old.push(show(ev));
      expect(old).toEqual(['stdout@0:\u0000\u00ff', 'exit']);
      expect(asked.slice(2).map((q) => q.encoding)).toEqual(['binary', 'base64']);
    } finally {
      wss.close();
      http.closeAllConnections();
      await new Promise((resolve) => http.close(resolve));
    }
  });

  test('bundles for a browser: no zod, no node: modules', async () => {
    const out = await build({ entryPoints: [`${ROOT}src/client/index.ts`], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' });
    const code = out.outputFiles[0]!.text;
    expect(code).not.toMatch(/from ["'](zod|node:)/);
    expect(code).not.toContain('ZodError');
    expect(code).toMatch(/ExecdClient = class/);
  });
});
