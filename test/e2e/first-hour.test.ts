import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CheckOutputRequest, CallRequest, GetoutputRequest, SubprocessRunRequest } from '../../src/schemas/subprocess.js';
import { CommandSpec, RunRequest } from '../../src/schemas/run.js';
import { JobRequest, SignalRequest } from '../../src/schemas/jobs.js';
import { ERROR_CODES } from '../../src/errors.js';
import { AUTH, type TestApp } from '../helpers/app.js';
import { settle, startJobsApp, submit, waitRunning } from '../helpers/jobs.js';

// Issue 15: what a newcomer meets in the first hour.
let t: TestApp & { dataDir: string };
beforeAll(async () => {
  t = await startJobsApp({ EXECD_QUEUES: 'default:4', EXECD_JOB_TIMEOUT_MS: '1500' });
});
afterAll(async () => {
  await t?.close();
});

describe('routes without a body take an empty one, whatever its Content-Type', () => {
  it('POST /v1/jobs/{id}/cancel with content-type application/json and no body, and curl -X POST -d \'\' (form, empty)', async () => {
    for (const type of ['application/json', 'application/x-www-form-urlencoded', 'text/plain']) {
      const job = await submit(t, { argv: ['sleep', '30'] });
      const res = await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH).set('content-type', type).send('');
      expect(res.status, `${type}: ${res.text}`).toBe(200);
      expect(res.body.state).toBe('canceled');
    }
  });

  it('a route with a body still wants JSON: empty JSON is 400, another media type 415, a body on a route without one 415', async () => {
    expect((await t.http.post('/v1/run').set(AUTH).set('content-type', 'application/json').send('')).status).toBe(400);
    expect((await t.http.post('/v1/run').set(AUTH).set('content-type', 'application/x-www-form-urlencoded').send('')).status).toBe(415);
    const job = await submit(t, { argv: ['true'] });
    expect((await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH).set('content-type', 'application/x-www-form-urlencoded').send('a=b')).status).toBe(415);
  });
});

describe('answers a newcomer reads with curl', () => {
  it('every JSON answer, problems included, ends with a newline', async () => {
    for (const res of [
      await t.http.get('/healthz'),
      await t.http.get('/v1/info').set(AUTH),
      await t.http.get('/v1/jobs').set(AUTH),
      await t.http.get('/v1/info'),
      await t.http.get('/nowhere'),
      await t.http.get('/openapi.json'),
    ]) {
      expect(res.headers['content-type']).toMatch(/^application\/(problem\+)?json/);
      expect(res.text.endsWith('}\n'), res.text.slice(-40)).toBe(true);
      expect(() => JSON.parse(res.text)).not.toThrow();
    }
  });

  it('GET / points a browser to the dashboard (/docs when it is off), links as JSON otherwise', async () => {
    const html = await t.http.get('/').set('accept', 'text/html,application/xhtml+xml');
    expect(html.status).toBe(302);
    expect(html.headers.location).toBe('/ui/');
    const json = await t.http.get('/');
    expect(json.status).toBe(200);
    expect(json.body).toMatchObject({ name: 'execd', version: '0.1.0', docs: '/docs', openapi: '/openapi.json' });
  });
});

describe('EXECD_JOB_TIMEOUT_MS: a job that asks for nothing is stopped; one may ask for more, or none', () => {
  it('a job without timeoutMs ends timed_out after the default; timeoutMs 0 runs on; its own timeoutMs wins', async () => {
    const forgotten = await submit(t, { argv: ['cat'], stdin: { stream: true } });
    const unbounded = await submit(t, { argv: ['sleep', '30'], timeoutMs: 0 });
    const own = await submit(t, { argv: ['sleep', '30'], timeoutMs: 300 });
    expect((await settle(t, own.id)).state).toBe('timed_out');
    const done = await settle(t, forgotten.id);
    expect(done.state).toBe('timed_out');
    expect(done.result?.timedOut).toBe(true);
    const running = await waitRunning(t, unbounded.id);
    expect(running.state).toBe('running');
    expect(running.spec.timeoutMs).toBe(0);
    expect((await t.http.post(`/v1/jobs/${unbounded.id}/cancel`).set(AUTH)).body.state).toBe('canceled');
  });

  it("a policy rule's maxTimeoutMs caps a job that asked for none", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'execd-first-hour-'));
    const policy = join(dir, 'policy.yaml');
    writeFileSync(policy, 'rules:\n  - name: capped\n    executables: [sleep]\n    maxTimeoutMs: 400\n');
    const capped = await startJobsApp({ EXECD_QUEUES: 'default:1', EXECD_POLICY_FILE: policy });
    try {
      const job = await submit(capped, { argv: ['sleep', '30'], timeoutMs: 0 });
      const done = await settle(capped, job.id);
      expect(done.state).toBe('timed_out');
      expect(done.result!.durationMs).toBeLessThan(10_000);
    } finally {
      await capped.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('timeoutMs 0 is for jobs only: a synchronous run must end', async () => {
    expect((await t.http.post('/v1/run').set(AUTH).send({ argv: ['true'], timeoutMs: 0 })).status).toBe(400);
  });
});

describe('follow=true&status=inline: the exit status in-band, for clients that cannot read trailers', () => {
  const follow = async (id: string, query = 'follow=true&status=inline') => {
    const res = await fetch(`${t.url}/v1/jobs/${id}/output?${query}`, { headers: AUTH });
    return { res, body: Buffer.from(await res.arrayBuffer()) };
  };
  const lastLine = (body: Buffer) => JSON.parse(body.toString().trimEnd().split('\n').pop()!) as Record<string, unknown>;

  it('output that ends without a newline: a newline, then the status line; the output is the first outputEnd bytes', async () => {
    const job = await submit(t, { command: 'printf "a\\nb"; sleep 0.2; printf c; exit 3' });
    const { res, body } = await follow(job.id);
    expect(res.status).toBe(200);
    const status = lastLine(body);
    expect(status).toEqual({ execd: 'status', state: 'failed', exitCode: 3, signal: null, returncode: 3, timedOut: false, outputEnd: 4 });
    expect(body.subarray(0, 4).toString()).toBe('a\nbc');
    expect(body.toString()).toBe(`a\nbc\n${JSON.stringify(status)}\n`);
  });

  it('output that ends with a newline gets no extra one; an offset and stderr work as without status', async () => {
    const job = await submit(t, { command: 'echo one; echo two; echo err >&2' });
    const { body } = await follow(job.id, 'follow=true&status=inline&offset=4');
    expect(body.toString()).toBe(`two\n${JSON.stringify({ execd: 'status', state: 'succeeded', exitCode: 0, signal: null, returncode: 0, timedOut: false, outputEnd: 8 })}\n`);
    const err = await follow(job.id, 'follow=true&status=inline&stream=stderr');
    expect(lastLine(err.body)).toMatchObject({ state: 'succeeded', outputEnd: 4 });
  });

  it('a job killed by a signal, and one canceled before it ran (no process: exit fields null)', async () => {
    const job = await submit(t, { command: 'echo up; kill -TERM $$' });
    expect(lastLine((await follow(job.id)).body)).toMatchObject({ state: 'failed', exitCode: null, signal: 'SIGTERM', returncode: -15 });
    const blockers = await Promise.all([1, 2, 3, 4].map(() => submit(t, { argv: ['sleep', '30'] })));
    const queued = await submit(t, { argv: ['echo', 'never'] });
    const following = follow(queued.id);
    await t.http.post(`/v1/jobs/${queued.id}/cancel`).set(AUTH);
    expect(lastLine((await following).body)).toEqual({ execd: 'status', state: 'canceled', exitCode: null, signal: null, returncode: null, timedOut: null, outputEnd: 0 });
    await Promise.all(blockers.map((b) => t.http.post(`/v1/jobs/${b.id}/cancel`).set(AUTH)));
  });

  it('status=inline without follow is a 400; without status the body is the bare output', async () => {
    const job = await submit(t, { argv: ['echo', 'hi'] });
    await settle(t, job.id);
    expect((await follow(job.id, 'status=inline')).res.status).toBe(400);
    expect((await follow(job.id, 'follow=true')).body.toString()).toBe('hi\n');
    expect((await follow(job.id, 'follow=true&status=trailers')).body.toString()).toBe('hi\n');
  });
});

describe('/docs: the document works wherever execd listens, and its examples are real', () => {
  let doc: Record<string, any>;
  beforeAll(async () => {
    doc = (await t.http.get('/openapi.json')).body;
  });

  it("a relative server URL and the package's version", () => {
    expect(doc.servers).toEqual([expect.objectContaining({ url: '/' })]);
    expect(doc.info.version).toBe('0.1.0');
  });

  it("the page's policy lets Try it out call the same origin over plain HTTP", async () => {
    const csp = String((await t.http.get('/docs/')).headers['content-security-policy']);
    expect(csp).toContain("default-src 'self'");
    expect(csp).not.toContain('upgrade-insecure-requests');
  });

  it('every request example validates against its schema', () => {
    const schemas = {
      CommandSpec, RunRequest, JobRequest, SignalRequest, GetoutputRequest, CheckOutputRequest, CallRequest, SubprocessRunRequest,
    };
    for (const [name, schema] of Object.entries(schemas)) {
      const examples = doc.components.schemas[name]?.examples as unknown[] | undefined;
      expect(examples?.length, name).toBeGreaterThan(0);
      for (const example of examples!) expect(schema.safeParse(example).success, `${name}: ${JSON.stringify(example)}`).toBe(true);
    }
  });

  it('no integer shows the bounds of a safe integer (Swagger UI would offer -9007199254740991)', () => {
    const text = JSON.stringify(doc);
    expect(text).not.toContain('9007199254740991');
  });

  it('each error status carries one example per code it can answer, with that code and status', () => {
    let checked = 0;
    for (const ops of Object.values<Record<string, any>>(doc.paths)) {
      for (const op of Object.values<Record<string, any>>(ops)) {
        for (const [status, res] of Object.entries<Record<string, any>>(op.responses ?? {})) {
          if (Number(status) < 400) continue;
          const examples = res.content['application/problem+json'].examples as Record<string, { value: { code: string; status: number } }>;
          expect(Object.keys(examples).length, `${op.operationId} ${status}`).toBeGreaterThan(0);
          for (const [code, ex] of Object.entries(examples)) {
            expect(ex.value.code).toBe(code);
            expect(ex.value.status).toBe(Number(status));
            expect(ERROR_CODES[code as keyof typeof ERROR_CODES].status).toBe(Number(status));
            checked++;
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(50);
    expect(Object.keys(doc.paths['/v1/run'].post.responses['422'].content['application/problem+json'].examples).sort()).toEqual(
      ['COMMAND_FAILED', 'SPAWN_FAILED', 'TIMEOUT_EXPIRED'],
    );
    expect(Object.keys(doc.paths['/v1/info'].get.responses['403'].content['application/problem+json'].examples)).toEqual(['FORBIDDEN']);
    expect(Object.keys(doc.paths['/v1/info'].get.responses['503'].content['application/problem+json'].examples).sort()).toEqual(['BACKEND_UNAVAILABLE', 'QUEUE_FULL', 'SHUTTING_DOWN']);
  });
});
