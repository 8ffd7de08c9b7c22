import { execFileSync } from 'node:child_process';
import type { FastifyInstance } from 'fastify';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { AUTH, dropRedisKeys, testConfig, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';
import { freshPrefix, REDIS_URL, requireRedis } from '../helpers/redis.js';
import { connect, reassemble, type Client } from '../helpers/stream.js';
import supertest from 'supertest';

/**
 * Redis backend: streamed stdin to a child that reads late. The writer is only slowed (no error frame
 * while the job's stdin is open, however long the child leaves it unread: the API node has no deadline,
 * it sends the write again until the worker answers), and at most one write waits beyond the pipe,
 * however many writers the job has. An API node and a worker node in this process, so the test can watch
 * what reaches the child's pipe.
 */

requireRedis();

const CHUNK = 32 * 1024;
/**
 * What the kernel holds between the server and the child: the native spawner gives the child a pipe (Linux's
 * 64 KiB, F_GETPIPE_SZ's default); child_process (libuv) a socketpair, whose buffer is larger and is measured
 * here with writes of the test's size.
 */
const PIPE_BYTES =
  process.env.EXECD_SPAWNER === 'child_process'
    ? Number(
        execFileSync('python3', ['-c', `import socket
a, b = socket.socketpair(); a.setblocking(False); n = 0
try:
    while True: n += a.send(b'x' * ${CHUNK})
except BlockingIOError: print(n)`]).toString(),
      )
    : 64 * 1024;
const CHUNKS = 4; // 128 KiB per writer, as in the report
const WRITERS = 3;
/** Longer than two resends of an unanswered write (STDIN_RESEND_MS, 2 s), far shorter than the old 30 s deadline. */
const SLEEP_S = 5;

let api: FastifyInstance;
let worker: FastifyInstance;
let t: TestApp;
beforeAll(async () => {
  const shared = { EXECD_QUEUE_BACKEND: 'redis', EXECD_REDIS_URL: REDIS_URL, EXECD_REDIS_PREFIX: freshPrefix(), EXECD_QUEUES: 'default:2' };
  const workerConfig = testConfig({ ...shared, EXECD_ROLE: 'worker', EXECD_NODE_ID: `stdin-worker-${shared.EXECD_REDIS_PREFIX}` });
  const apiConfig = testConfig({ ...shared, EXECD_ROLE: 'api', EXECD_NODE_ID: `stdin-api-${shared.EXECD_REDIS_PREFIX}` });
  worker = await buildApp(workerConfig);
  await worker.ready();
  api = await buildApp(apiConfig);
  const url = await api.listen({ host: '127.0.0.1', port: 0 });
  t = { app: api, config: apiConfig, http: supertest(api.server), url, close: async () => {} };
  expect(await waitFor(async () => (await api.services.jobs.queues()).every((q) => q.concurrency > 0), 10_000)).toBe(true);
  return async () => {
    await Promise.all([api.close(), worker.close()]);
    await dropRedisKeys(apiConfig);
  };
});

/** Chunk `c` of writer `w`: recognizable wherever it lands in the output. */
const chunkOf = (w: number, c: number): Buffer => Buffer.alloc(CHUNK, `<w${w}c${c}>`);

describe('Redis: streamed stdin to a child that reads late', () => {
  it(`${WRITERS} writers of 128 KiB to \`sleep ${SLEEP_S}; exec cat\`: no error frame, every byte once and in order, one write at most beyond the pipe`, async () => {
    const res = await t.http.post('/v1/jobs').set(AUTH).send({ command: `sleep ${SLEEP_S}; exec cat`, stdin: { stream: true } });
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    let startedAt = 0;
    expect(await waitFor(async () => {
      const job = (await t.http.get(`/v1/jobs/${id}`).set(AUTH)).body as { pid: number | null; startedAt: string };
      startedAt = Date.parse(job.startedAt);
      return job.pid !== null;
    }, 10_000)).toBe(true);

    // What reaches the child's stdin (its pipe and the stream's buffer) while it does not read.
    const run = worker.services.tracker.list().find((r) => r.jobId === id)!;
    expect(run).toBeDefined();
    let written = 0;
    const write = run.handle.writeStdin.bind(run.handle);
    run.handle.writeStdin = (data: Buffer) => {
      written += data.length;
      return write(data);
    };

    const writers: Client[] = [];
    for (let w = 0; w < WRITERS; w++) writers.push(await connect(t, `/v1/jobs/${id}/stream?encoding=base64`));
    for (let c = 0; c < CHUNKS; c++) {
      for (let w = 0; w < WRITERS; w++) writers[w]!.send({ type: 'stdin', data: chunkOf(w, c).toString('base64') });
    }
    // Shortly before the sleep ends, every writer has been waiting for seconds: what went to the pipe is all in flight.
    await new Promise((r) => setTimeout(r, startedAt + (SLEEP_S - 1) * 1000 - Date.now()));
    const inFlight = written;
    expect(inFlight).toBeGreaterThanOrEqual(Math.min(PIPE_BYTES, 64 * 1024));
    expect(inFlight).toBeLessThanOrEqual(PIPE_BYTES + CHUNK);
    for (const client of writers) expect(client.frames.filter((f) => f.type === 'error')).toEqual([]);
    // cat runs after the sleep and reads everything; then one writer ends the input.
    const total = WRITERS * CHUNKS * CHUNK;
    expect(await waitFor(async () => (await t.http.get(`/v1/jobs/${id}`).set(AUTH)).body.outputBytes.stdout === total, (SLEEP_S + 20) * 1000, 100)).toBe(true);
    writers[0]!.send({ type: 'stdin', eof: true });
    const exits = await Promise.all(writers.map((client) => client.next((f) => f.type === 'exit')));
    expect(exits.map((e) => e.state)).toEqual(Array(WRITERS).fill('succeeded'));
    for (const client of writers) expect(client.frames.filter((f) => f.type === 'error')).toEqual([]);

    // Every chunk once, whole, each writer's in its order.
    const out = reassemble(writers[0]!.frames, 'stdout').bytes;
    expect(out.length).toBe(total);
    const order: string[] = [];
    for (let at = 0; at < out.length; at += CHUNK) {
      const chunk = out.subarray(at, at + CHUNK);
      const tag = /^<w(\d)c(\d)>/.exec(chunk.toString('latin1'))![0];
      expect(chunk.equals(Buffer.alloc(CHUNK, tag)), `chunk at ${at}`).toBe(true);
      order.push(tag);
    }
    for (let w = 0; w < WRITERS; w++) expect(order.filter((tag) => tag.startsWith(`<w${w}`))).toEqual([...Array(CHUNKS).keys()].map((c) => `<w${w}c${c}>`));
  }, 60_000);
});
