import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { AUTH, startApp, TOKEN, type TestApp, ON_REDIS } from '../helpers/app.js';

/** One sample of the Prometheus text exposition format (0.0.4). */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})?\\s+(\\S+)(?:\\s+-?\\d+)?$`);
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*/y;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

/**
 * Parse the exposition text strictly enough to catch a malformed line: HELP
 * and TYPE comments, samples with quoted labels and float values, every
 * sample belonging to a family whose TYPE came first.
 */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
      if (!m) throw new Error(`bad comment line: ${line}`);
      if (m[1] === 'TYPE') {
        if (!TYPES.has(m[3]!)) throw new Error(`bad type: ${line}`);
        if (types.has(m[2]!)) throw new Error(`TYPE twice for ${m[2]}`);
        types.set(m[2]!, m[3]!);
      }
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`bad sample line: ${line}`);
    const [, name, rawLabels = '', rawValue] = m;
    const labels: Record<string, string> = {};
    LABEL.lastIndex = 0;
    while (LABEL.lastIndex < rawLabels.length) {
      const l = LABEL.exec(rawLabels);
      if (!l) throw new Error(`bad labels: ${line}`);
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    }
    // Go's ParseFloat, which Prometheus uses, takes NaN in any case (prom-client writes "Nan").
    const value = rawValue === '+Inf' ? Infinity : rawValue === '-Inf' ? -Infinity : /^nan$/i.test(rawValue!) ? NaN : Number(rawValue);
    if (Number.isNaN(value) && !/^nan$/i.test(rawValue!)) throw new Error(`bad value: ${line}`);
    const family = name!.replace(/_(bucket|sum|count)$/, '');
    if (!types.has(name!) && !types.has(family)) throw new Error(`sample before its TYPE: ${line}`);
    samples.push({ name: name!, labels, value });
  }
  return { samples, types };
}

/** The value of the one sample with this name and these labels (0 when absent: a counter not yet moved). */
function valueOf(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return found.reduce((sum, s) => sum + s.value, 0);
}

let t: TestApp | undefined;
let other: TestApp | undefined;
afterEach(async () => {
  await t?.close();
  await other?.close();
  t = other = undefined;
});

async function scrape(app: TestApp): Promise<Sample[]> {
  const res = await app.http.get('/metrics').set(AUTH);
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(res.text).samples;
}

async function runJob(app: TestApp, body: Record<string, unknown>): Promise<{ id: string; state: string }> {
  const created = await app.http.post('/v1/jobs').set(AUTH).send(body);
  expect(created.status).toBe(202);
  const done = await app.http.get(`/v1/jobs/${created.body.id}?waitMs=10000`).set(AUTH);
  return done.body as { id: string; state: string };
}

describe('/metrics', () => {
  it('needs the token like /v1, and is declared in the OpenAPI document', async () => {
    t = await startApp();
    expect((await t.http.get('/metrics')).status).toBe(401);
    expect((await t.http.get('/metrics').set({ authorization: 'Bearer wrong-token-0123456789' })).status).toBe(401);
    const doc = t.app.swagger() as unknown as { paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    expect(Object.keys(doc.paths['/metrics']!.get!.responses)).toEqual(expect.arrayContaining(['200', '401', '503']));
  });

  it('parses as Prometheus text, and its counters move with real jobs and runs', async () => {
    t = await startApp({ EXECD_QUEUES: 'default:2,io:1' });
    const before = await scrape(t);
    for (const family of ['execd_jobs', 'execd_queue_depth', 'execd_workers', 'execd_workers_running', 'execd_ws_viewers', 'execd_ws_gaps_total']) {
      expect(before.some((s) => s.name === family), family).toBe(true);
    }
    // Process metrics: CPU, memory, event-loop lag.
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(before.some((s) => s.name === name), name).toBe(true);
    }
    expect(valueOf(before, 'execd_workers', { queue: 'default' })).toBe(2);
    expect(valueOf(before, 'execd_workers', { queue: 'io' })).toBe(1);

    for (let i = 0; i < 3; i++) expect((await runJob(t, { argv: ['echo', 'hello'] })).state).toBe('succeeded');
    expect((await runJob(t, { command: 'echo oops >&2; exit 3', queue: 'io' })).state).toBe('failed');
    expect((await runJob(t, { argv: ['/no/such/program'] })).state).toBe('failed');
    expect((await t.http.post('/v1/run').set(AUTH).send({ argv: ['true'] })).status).toBe(200);
    expect((await t.http.post('/v1/run').set(AUTH).send({ argv: ['/no/such/program'] })).status).toBe(422);

    const after = await scrape(t);
    const delta = (name: string, labels: Record<string, string> = {}) => valueOf(after, name, labels) - valueOf(before, name, labels);
    expect(delta('execd_jobs_finished_total', { queue: 'default', state: 'succeeded' })).toBe(3);
    expect(delta('execd_jobs_finished_total', { queue: 'io', state: 'failed' })).toBe(1);
    expect(delta('execd_jobs_finished_total', { queue: 'default', state: 'failed' })).toBe(1);
    // process metrics are the answering node's own: on Redis the jobs ran on the worker node
    expect(delta('execd_run_duration_seconds_count', { kind: 'job' })).toBe(ON_REDIS ? 0 : 4);
    expect(delta('execd_run_duration_seconds_count', { kind: 'sync' })).toBe(1);
    expect(delta('execd_run_duration_seconds_bucket', { kind: 'sync', le: '+Inf' })).toBe(1);
    expect(delta('execd_spawn_failures_total', { kind: 'job', errno: 'ENOENT' })).toBe(1);
    expect(delta('execd_spawn_failures_total', { kind: 'sync', errno: 'ENOENT' })).toBe(1);
    expect(delta('execd_job_output_bytes_total', { queue: 'default', stream: 'stdout' })).toBe(3 * 'hello\n'.length);
    expect(delta('execd_job_output_bytes_total', { queue: 'io', stream: 'stderr' })).toBe('oops\n'.length);
    expect(valueOf(after, 'execd_queue_depth', { queue: 'default' })).toBe(0);
    expect(valueOf(after, 'execd_draining')).toBe(0);
  });

  it('shows queue depth and running workers of queued and running jobs, and open WebSocket viewers', async () => {
    t = await startApp({ EXECD_QUEUES: 'default:1' });
    const first = await t.http.post('/v1/jobs').set(AUTH).send({ argv: ['sleep', '30'] });
    await t.http.post('/v1/jobs').set(AUTH).send({ argv: ['true'] });
    await t.http.post('/v1/jobs').set(AUTH).send({ argv: ['true'] });
    const ws = new WebSocket(`${t.url.replace(/^http/, 'ws')}/v1/events`, { headers: { authorization: `Bearer ${TOKEN}` } });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    let samples: Sample[] = [];
    for (let i = 0; i < 100; i++) {
      samples = await scrape(t);
      // a job is running from the moment a worker takes it; its process group counts once the spawn returned
      const spawned = ON_REDIS || valueOf(samples, 'execd_process_groups', { kind: 'job' }) === 1;
      if (valueOf(samples, 'execd_workers_running', { queue: 'default' }) === 1 && spawned) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(valueOf(samples, 'execd_workers_running', { queue: 'default' })).toBe(1);
    expect(valueOf(samples, 'execd_jobs', { queue: 'default', state: 'running' })).toBe(1);
    expect(valueOf(samples, 'execd_jobs', { queue: 'default', state: 'queued' })).toBe(2);
    expect(valueOf(samples, 'execd_queue_depth', { queue: 'default' })).toBe(2);
    // process groups are the answering node's own: on Redis the job runs on the worker node
    expect(valueOf(samples, 'execd_process_groups', { kind: 'job' })).toBe(ON_REDIS ? 0 : 1);
    expect(valueOf(samples, 'execd_ws_viewers', { endpoint: 'events' })).toBe(1);
    ws.close();
    await t.http.post(`/v1/jobs/${first.body.id}/cancel`).set(AUTH);
  });

  it('keeps one registry per app: another app in the same process counts only its own jobs', async () => {
    t = await startApp();
    other = await startApp();
    await runJob(t, { argv: ['true'] });
    const mine = await scrape(t);
    const theirs = await scrape(other);
    expect(valueOf(mine, 'execd_jobs_finished_total', { state: 'succeeded' })).toBe(1);
    expect(valueOf(theirs, 'execd_jobs_finished_total', { state: 'succeeded' })).toBe(0);
  });
});

describe('request ids', () => {
  it('keeps and echoes an incoming X-Request-Id, logs it as reqId, and makes one up otherwise', async () => {
    const lines: Record<string, unknown>[] = [];
    const stream = { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) };
    t = await startApp({}, { logger: { level: 'info', stream } });
    const kept = await t.http.get('/v1/info').set(AUTH).set('x-request-id', 'trace-abc.123');
    expect(kept.headers['x-request-id']).toBe('trace-abc.123');
    expect(lines.some((l) => l.reqId === 'trace-abc.123' && l.msg === 'request completed')).toBe(true);
    // Errors too.
    const refused = await t.http.get('/v1/info').set('x-request-id', 'trace-401');
    expect(refused.status).toBe(401);
    expect(refused.headers['x-request-id']).toBe('trace-401');
    const made = await t.http.get('/healthz');
    expect(made.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    // Not a sane token (spaces, too long): replaced, never logged or echoed as given.
    for (const bad of ['has spaces in it', 'x'.repeat(200)]) {
      const res = await t.http.get('/healthz').set('x-request-id', bad);
      expect(res.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    }
  });
});

describe('health and readiness', () => {
  it('/healthz and /readyz are open; /readyz turns 503 SHUTTING_DOWN the moment a shutdown starts, /healthz stays 200', async () => {
    t = await startApp({ EXECD_SHUTDOWN_GRACE_MS: '2000' });
    expect((await t.http.get('/healthz')).body).toEqual({ status: 'ok' });
    expect((await t.http.get('/readyz')).body).toEqual({ status: 'ok' });
    const job = await t.http.post('/v1/jobs').set(AUTH).send({ argv: ['sleep', '0.5'] });
    // A request in flight before the shutdown is answered; new ones are refused.
    const waiting = t.http.get(`/v1/jobs/${job.body.id}?waitMs=5000`).set(AUTH).then((r) => r);
    await new Promise((r) => setTimeout(r, 50));
    const done = t.app.shutdown.run('test');
    const ready = await t.http.get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.headers['retry-after']).toBe('1');
    expect(ready.body).toMatchObject({ code: 'SHUTTING_DOWN', health: 'draining' });
    expect((await t.http.get('/healthz')).status).toBe(200);
    const late = await t.http.get('/v1/info').set(AUTH);
    expect(late.status).toBe(503);
    expect(late.body.code).toBe('SHUTTING_DOWN');
    // The running job may finish in the grace: it ends as it would have.
    const final = await waiting;
    expect(final.status).toBe(200);
    expect(final.body.state).toBe('succeeded');
    await done;
    expect(t.app.shutdown.phase).toBe('closed');
    expect(t.app.shutdown.run('again')).toBe(t.app.shutdown.run('and again')); // closing twice is harmless: the same promise
    await t.app.shutdown.run('again');
    t = undefined; // closed already
  });
});

describe('load shedding', () => {
  it('answers 503 QUEUE_FULL "server overloaded" with Retry-After while the event loop lags; /healthz is exempt', async () => {
    t = await startApp({ EXECD_MAX_EVENT_LOOP_DELAY_MS: '20' });
    const app = t;
    let shed: { status: number; headers: Record<string, string>; body: Record<string, unknown> } | undefined;
    let health = 0;
    for (let i = 0; i < 20 && !shed; i++) {
      const end = Date.now() + 250;
      while (Date.now() < end) {
        // block the event loop (the server's: it runs in this process)
      }
      const [info, h] = await Promise.all([app.http.get('/v1/info').set(AUTH), app.http.get('/healthz')]);
      if (info.status === 503) {
        shed = info as unknown as typeof shed;
        health = h.status;
      }
    }
    expect(shed, 'no request was shed').toBeDefined();
    expect(shed!.headers['retry-after']).toBe('1');
    expect(shed!.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(shed!.body.code).toBe('QUEUE_FULL');
    expect(String(shed!.body.detail)).toMatch(/^server overloaded/);
    expect(health).toBe(200);
    // Once the loop is quiet again, requests are answered.
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) {
      await new Promise((r) => setTimeout(r, 50));
      ok = (await app.http.get('/v1/info').set(AUTH)).status === 200;
    }
    expect(ok).toBe(true);
    const samples = await scrape(app);
    expect(valueOf(samples, 'execd_requests_shed_total')).toBeGreaterThanOrEqual(1);
  });

  it('sampling off (a server at rest: main.ts) sheds nothing however long the loop stalls; on again, it sheds', async () => {
    t = await startApp({ EXECD_MAX_EVENT_LOOP_DELAY_MS: '20' });
    const app = t;
    const stallThenAsk = async () => {
      const end = Date.now() + 250;
      while (Date.now() < end) {
        // block the event loop (the server's: it runs in this process)
      }
      return (await app.http.get('/v1/info').set(AUTH)).status;
    };
    app.app.loadShedding!.sample(false);
    for (let i = 0; i < 4; i++) expect(await stallThenAsk()).toBe(200);
    app.app.loadShedding!.sample(true);
    let shed = false;
    for (let i = 0; i < 20 && !shed; i++) shed = (await stallThenAsk()) === 503;
    expect(shed, 'no request was shed once sampling was on again').toBe(true);
  });

  it('EXECD_MAX_EVENT_LOOP_DELAY_MS=0 turns it off', async () => {
    t = await startApp({ EXECD_MAX_EVENT_LOOP_DELAY_MS: '0' });
    const end = Date.now() + 300;
    while (Date.now() < end) {
      // block
    }
    expect((await t.http.get('/v1/info').set(AUTH)).status).toBe(200);
    expect(t.app.loadShedding).toBeNull();
  });
});
