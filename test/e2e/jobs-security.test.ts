import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { lookupUser } from '../../src/security/identity.js';
import { ON_REDIS, type TestApp } from '../helpers/app.js';
import { waitFor } from '../helpers/proc.js';
import { bearer, SCOPED_TOKENS, tempDir, writeTokensFile } from '../helpers/security.js';
import { connect, refusal, type Client, type Frame } from '../helpers/stream.js';
import { isDone, startJobsApp } from '../helpers/jobs.js';

/**
 * Jobs under the security layer: a job belongs to the token that submitted it
 * (another token without admin gets 404 for everything about it), the command
 * policy admits jobs as it does sync runs and its grant (run-as user,
 * ceilings) holds when the job starts, and Idempotency-Keys are per token.
 */

const dir = tempDir('execd-jobsec-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ALICE = 'alice-token-0123456789';
const BOB = 'bob-token-0123456789ab';
const ADMIN = SCOPED_TOKENS.admin;
const PEOPLE = [
  { id: 'alice', token: ALICE, scopes: ['jobs:read', 'jobs:write', 'processes'] },
  { id: 'bob', token: BOB, scopes: ['jobs:read', 'jobs:write', 'processes'] },
];
const tokensFile = writeTokensFile(dir, PEOPLE);

const isRoot = process.geteuid?.() === 0;
const nobody = lookupUser('nobody');

type Http = TestApp['http'];
const as = (token: string) => bearer(token);

async function submitAs(t: TestApp, token: string, body: object, headers: Record<string, string> = {}): Promise<Job> {
  const res = await t.http.post('/v1/jobs').set(as(token)).set(headers).send(body);
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body as Job;
}

async function settleAs(t: TestApp, token: string, id: string, timeoutMs = 20_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await t.http.get(`/v1/jobs/${id}?waitMs=${Math.min(5000, Math.max(1, deadline - Date.now()))}`).set(as(token));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    if (isDone(res.body as Job) || Date.now() >= deadline) return res.body as Job;
  }
}

async function runningAs(t: TestApp, token: string, id: string): Promise<Job> {
  let job: Job | undefined;
  await waitFor(async () => {
    job = (await t.http.get(`/v1/jobs/${id}`).set(as(token))).body as Job;
    return (job.state === 'running' && job.pid !== null) || isDone(job);
  }, 10_000);
  expect(job).toMatchObject({ state: 'running' });
  return job!;
}

/** Every job id a token can list, walking the pages `limit` at a time. */
async function listAll(http: Http, token: string, limit: number): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 100; page++) {
    const res: { status: number; body: { items: Job[]; nextCursor: string | null } } = await http
      .get(`/v1/jobs?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`)
      .set(as(token));
    expect(res.status).toBe(200);
    ids.push(...res.body.items.map((j) => j.id));
    cursor = res.body.nextCursor;
    if (cursor === null) return ids;
  }
  throw new Error('too many pages');
}

/** The body of GET /v1/jobs/{id}/output as text. */
async function outputText(t: TestApp, token: string, id: string): Promise<string> {
  const res = await t.http.get(`/v1/jobs/${id}/output`).set(as(token)).buffer(true).parse((r, done) => {
    const chunks: Buffer[] = [];
    r.on('data', (c: Buffer) => chunks.push(c));
    r.on('end', () => done(null, Buffer.concat(chunks)));
  });
  expect(res.status).toBe(200);
  return (res.body as Buffer).toString();
}

const uidOf = (pid: number): number => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

describe('ownership: a job belongs to the token that submitted it', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startJobsApp({ EXECD_TOKENS_FILE: tokensFile, EXECD_QUEUES: 'default:4' });
  });
  afterAll(() => t.close());

  it('another token gets 404 (as for an unknown id) for every operation on the job, HTTP and WebSocket; the owner and admin do not', async () => {
    const job = await submitAs(t, ALICE, { argv: ['sleep', '30'] });
    expect(job).not.toHaveProperty('ownerId');
    expect(job).not.toHaveProperty('grant');
    await runningAs(t, ALICE, job.id);
    const unknown = (await t.http.get('/v1/jobs/no-such-job').set(as(BOB))).body;
    for (const [method, path, body] of [
      ['get', `/v1/jobs/${job.id}`],
      ['get', `/v1/jobs/${job.id}?waitMs=50`],
      ['get', `/v1/jobs/${job.id}/output`],
      ['get', `/v1/jobs/${job.id}/output?stream=stderr&follow=true`],
      ['post', `/v1/jobs/${job.id}/signal`, { signal: 'SIGCONT' }],
      ['post', `/v1/jobs/${job.id}/cancel`, {}],
      ['delete', `/v1/jobs/${job.id}`],
    ] as Array<['get' | 'post' | 'delete', string, object?]>) {
      const req = t.http[method](path).set(as(BOB));
      const res = await (body ? req.send(body) : req);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
      expect(res.body.detail).toBe(unknown.detail.replace('no-such-job', job.id));
    }
    const ws = await refusal(t, `/v1/jobs/${job.id}/stream`, { token: BOB });
    expect(ws.status).toBe(404);
    expect(ws.body.code).toBe('NOT_FOUND');
    // the job was left alone: still running
    expect((await t.http.get(`/v1/jobs/${job.id}`).set(as(ALICE))).body.state).toBe('running');

    // admin sees, signals, streams and cancels it; the owner sees it too
    const admin = as(ADMIN);
    expect((await t.http.get(`/v1/jobs/${job.id}`).set(admin)).status).toBe(200);
    expect((await t.http.post(`/v1/jobs/${job.id}/signal`).set(admin).send({ signal: 'SIGCONT' })).status).toBe(202);
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`, { token: ADMIN });
    await viewer.next((f) => f.type === 'state');
    const canceled = await t.http.post(`/v1/jobs/${job.id}/cancel`).set(admin).send({});
    expect(canceled.status).toBe(200);
    expect(canceled.body.state).toBe('canceled');
    expect((await viewer.closed).code).toBe(1000);
    expect((await t.http.get(`/v1/jobs/${job.id}/output`).set(as(ALICE))).status).toBe(200);
    expect((await t.http.delete(`/v1/jobs/${job.id}`).set(as(BOB))).status).toBe(404);
    expect((await t.http.delete(`/v1/jobs/${job.id}`).set(admin)).status).toBe(204);
    expect((await t.http.get(`/v1/jobs/${job.id}`).set(as(ALICE))).status).toBe(404);
  });

  it('the owner itself cancels, signals, streams and deletes its own job', async () => {
    const job = await submitAs(t, BOB, { command: 'echo hi; sleep 30' });
    await runningAs(t, BOB, job.id);
    expect((await t.http.post(`/v1/jobs/${job.id}/signal`).set(as(BOB)).send({ signal: 'SIGCONT' })).status).toBe(202);
    const viewer = await connect(t, `/v1/jobs/${job.id}/stream`, { token: BOB });
    await viewer.next((f) => f.type === 'output');
    expect((await t.http.post(`/v1/jobs/${job.id}/cancel`).set(as(BOB)).send({})).body.state).toBe('canceled');
    expect((await viewer.closed).code).toBe(1000);
    expect(await outputText(t, BOB, job.id)).toBe('hi\n');
    expect((await t.http.delete(`/v1/jobs/${job.id}`).set(as(BOB))).status).toBe(204);
  });

  it('GET /v1/jobs lists only the own jobs (every job for admin), and cursor pages stay exact under the filter', async () => {
    const mine: Record<'alice' | 'bob', string[]> = { alice: [], bob: [] };
    for (let i = 0; i < 7; i++) {
      const who = i % 3 === 0 ? 'bob' : 'alice';
      mine[who].push((await submitAs(t, who === 'bob' ? BOB : ALICE, { argv: ['true'] })).id);
    }
    for (const limit of [1, 2, 100]) {
      const alice = await listAll(t.http, ALICE, limit);
      const bob = await listAll(t.http, BOB, limit);
      expect(alice.filter((id) => mine.alice.includes(id) || mine.bob.includes(id))).toEqual(mine.alice);
      expect(bob.filter((id) => mine.alice.includes(id) || mine.bob.includes(id))).toEqual(mine.bob);
      expect(alice.some((id) => bob.includes(id))).toBe(false);
      const all = await listAll(t.http, ADMIN, limit);
      for (const id of [...mine.alice, ...mine.bob]) expect(all).toContain(id);
    }
    // a page of bob's with limit 1 always holds a job (the filter is inside the listing, not after it)
    const page = await t.http.get('/v1/jobs?limit=1').set(as(BOB));
    expect(page.body.items).toHaveLength(1);
  });

  it('/v1/events sends a viewer only the events of jobs it can see', async () => {
    const clients: Record<string, Client> = {};
    for (const [name, token] of [['alice', ALICE], ['bob', BOB], ['admin', ADMIN]] as const) clients[name] = await connect(t, '/v1/events', { token });
    const finished = (c: Client, id: string) => c.next((f: Frame) => f.type === 'finished' && (f.job as Job).id === id);
    const a = await submitAs(t, ALICE, { argv: ['true'] });
    await finished(clients.alice!, a.id);
    await finished(clients.admin!, a.id);
    const b = await submitAs(t, BOB, { argv: ['true'] });
    await finished(clients.bob!, b.id); // events arrive in order: bob has had every event of alice's job it would get
    await finished(clients.admin!, b.id);
    const ids = (c: Client) => new Set(c.frames.filter((f) => f.job).map((f) => (f.job as Job).id));
    expect(ids(clients.bob!).has(a.id)).toBe(false);
    expect(ids(clients.alice!).has(b.id)).toBe(false);
    expect(ids(clients.bob!).has(b.id)).toBe(true);
    expect([...ids(clients.admin!)]).toEqual(expect.arrayContaining([a.id, b.id]));
    for (const frame of [...clients.admin!.frames, ...clients.alice!.frames]) expect(frame.job).not.toHaveProperty('ownerId');
    for (const c of Object.values(clients)) c.ws.close();
  });

  // Node-local: /v1/processes describes the node that answers, and on Redis the job runs on the worker node.
  it.skipIf(ON_REDIS)('/v1/processes names the job of a process only to a token that can see the job (execd: true for all)', async () => {
    const job = await submitAs(t, ALICE, { argv: ['sleep', '30'] });
    const { pid } = await runningAs(t, ALICE, job.id);
    const seen = async (token: string) => {
      const list = await t.http.get(`/v1/processes?pgid=${pid}`).set(as(token));
      const one = await t.http.get(`/v1/processes/${pid}`).set(as(token));
      expect(list.status).toBe(200);
      expect(list.body.items).toHaveLength(1);
      expect(one.body).toMatchObject({ pid, execd: true, jobId: list.body.items[0].jobId });
      return list.body.items[0] as { execd: boolean; jobId: string | null };
    };
    expect(await seen(BOB)).toMatchObject({ execd: true, jobId: null });
    expect(await seen(ALICE)).toMatchObject({ execd: true, jobId: job.id });
    expect(await seen(ADMIN)).toMatchObject({ execd: true, jobId: job.id });
    await t.http.post(`/v1/jobs/${job.id}/cancel`).set(as(ALICE)).send({});
  });
});

describe('Idempotency-Key is per token', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startJobsApp({ EXECD_TOKENS_FILE: tokensFile });
  });
  afterAll(() => t.close());

  it("a key one token used neither fetches nor blocks another token's job", async () => {
    const key = { 'idempotency-key': 'deploy-42' };
    const body = { argv: ['echo', 'a'] };
    const alice = await submitAs(t, ALICE, body, key);
    // bob, same key and body: his own new job, not alice's
    const bob = await submitAs(t, BOB, body, key);
    expect(bob.id).not.toBe(alice.id);
    // each one's replay answers its own job
    const bobAgain = await t.http.post('/v1/jobs').set(as(BOB)).set(key).send(body);
    expect(bobAgain.status).toBe(200);
    expect(bobAgain.body.id).toBe(bob.id);
    const aliceAgain = await t.http.post('/v1/jobs').set(as(ALICE)).set(key).send(body);
    expect(aliceAgain.status).toBe(200);
    expect(aliceAgain.body.id).toBe(alice.id);
    // another body under the key is a conflict with the token's own job only, naming it and not the other's
    const conflict = await t.http.post('/v1/jobs').set(as(BOB)).set(key).send({ argv: ['echo', 'b'] });
    expect(conflict.status).toBe(409);
    expect(conflict.body.jobId).toBe(bob.id);
    expect(JSON.stringify(conflict.body)).not.toContain(alice.id);
    // a key only alice used is fresh for bob, whatever the body: no 409, no hint of alice's job
    const only = { 'idempotency-key': 'alice-only' };
    const aliceOnly = await submitAs(t, ALICE, { argv: ['echo', 'x'] }, only);
    const fresh = await submitAs(t, BOB, { argv: ['echo', 'y'] }, only);
    expect(fresh.id).not.toBe(aliceOnly.id);
    await settleAs(t, ALICE, alice.id);
    await settleAs(t, BOB, bob.id);
  });
});

describe('the command policy admits jobs, and its grant holds when they start', () => {
  let t: TestApp;
  const policy = join(dir, 'jobs-policy.json');
  beforeAll(async () => {
    writeFileSync(
      policy,
      JSON.stringify({
        rules: [
          { name: 'alice-jobs', tokens: ['alice'], executables: ['true', 'sleep', 'echo'], maxTimeoutMs: 400, maxOutputBytes: 10 },
          { name: 'admins', scopes: ['admin'], shell: true },
        ],
      }),
    );
    t = await startJobsApp({ EXECD_TOKENS_FILE: tokensFile, EXECD_POLICY_FILE: policy });
  });
  afterAll(() => t.close());

  it('a refused job is 403 COMMAND_NOT_ALLOWED naming the rule, and is never queued', async () => {
    const before = (await t.http.get('/v1/queues').set(as(ADMIN))).body;
    const events = await connect(t, '/v1/events', { token: ADMIN });
    for (const [token, body, rule] of [
      [ALICE, { argv: ['rm', '-rf', '/tmp/nothing-here'] }, 'alice-jobs'],
      [ALICE, { command: 'true' }, 'alice-jobs'],
      [ALICE, { argv: ['true'], env: { LD_PRELOAD: '/tmp/x.so' } }, 'alice-jobs'],
      [BOB, { argv: ['true'] }, 'default-deny'],
    ] as const) {
      const res = await t.http.post('/v1/jobs').set(as(token)).send(body);
      expect(res.status, JSON.stringify(body)).toBe(403);
      expect(res.body).toMatchObject({ code: 'COMMAND_NOT_ALLOWED', rule });
      expect(res.headers.location).toBeUndefined();
    }
    // an allowed one goes through, and is the only job the queue ever saw
    const ok = await submitAs(t, ALICE, { argv: ['true'] });
    expect((await settleAs(t, ALICE, ok.id)).state).toBe('succeeded');
    const after = (await t.http.get('/v1/queues').set(as(ADMIN))).body;
    expect(after[0].processed - before[0].processed).toBe(1);
    expect((await listAll(t.http, ADMIN, 100))).toEqual([ok.id]);
    await events.next((f) => f.type === 'finished');
    expect(events.frames.filter((f) => f.type === 'queued').map((f) => (f.job as Job).id)).toEqual([ok.id]);
    events.ws.close();
  });

  it("the rule's ceilings hold for the job: a missing or longer timeout is lowered to maxTimeoutMs, the output cap to maxOutputBytes", async () => {
    const job = await submitAs(t, ALICE, { argv: ['sleep', '10'], killGraceMs: 0 });
    const done = await settleAs(t, ALICE, job.id);
    expect(done.state).toBe('timed_out');
    expect(done.result!.durationMs).toBeLessThan(5000);
    const loud = await submitAs(t, ALICE, { argv: ['echo', '0123456789abcdefghij'], maxOutputBytes: 1000 });
    const said = await settleAs(t, ALICE, loud.id);
    expect(said).toMatchObject({ state: 'succeeded', outputBytes: { stdout: 10 }, result: { truncated: { stdout: true } } });
    expect(await outputText(t, ALICE, loud.id)).toBe('0123456789');
  });
});

describe('run-as identity for jobs', () => {
  it('without a policy or EXECD_RUN_AS a job runs as the server, and its result says so', async () => {
    const t = await startJobsApp();
    try {
      const res = await t.http.post('/v1/jobs').set(as('test-token-0123456789abcdef')).send({ argv: ['id', '-u'] });
      const job = await settleAs(t, 'test-token-0123456789abcdef', res.body.id);
      expect(job.result).toMatchObject({ uid: process.getuid!(), gid: process.getgid!() });
    } finally {
      await t.close();
    }
  });

  it.skipIf(!isRoot || !nobody)('a job under a rule with runAs nobody runs as nobody: /proc while it runs, its output, and result.uid/gid', async () => {
    const policy = join(dir, 'jobs-nobody.json');
    writeFileSync(policy, JSON.stringify({ rules: [{ name: 'as-nobody', tokens: ['alice'], executables: ['sleep', 'id'], runAs: 'nobody' }] }));
    const t = await startJobsApp({ EXECD_TOKENS_FILE: tokensFile, EXECD_POLICY_FILE: policy });
    try {
      const sleeper = await submitAs(t, ALICE, { argv: ['sleep', '30'] });
      const { pid } = await runningAs(t, ALICE, sleeper.id);
      expect(uidOf(pid!)).toBe(nobody!.uid);
      const canceled = await t.http.post(`/v1/jobs/${sleeper.id}/cancel`).set(as(ALICE)).send({});
      expect(canceled.body.result).toMatchObject({ uid: nobody!.uid, gid: nobody!.gid });

      const id = await submitAs(t, ALICE, { argv: ['id', '-u'] });
      const done = await settleAs(t, ALICE, id.id);
      expect(done).toMatchObject({ state: 'succeeded', result: { uid: nobody!.uid, gid: nobody!.gid } });
      expect(await outputText(t, ALICE, id.id)).toBe(`${nobody!.uid}\n`);
    } finally {
      await t.close();
    }
  });
});

describe('GET /v1/jobs/{id}/output racing DELETE of the same job', () => {
  let t: TestApp;
  const AUTH = { authorization: 'Bearer test-token-0123456789abcdef' };
  beforeAll(async () => {
    t = await startJobsApp({ EXECD_OUTPUT_MEMORY_BYTES: '4096' });
  });
  afterAll(() => t.close());

  async function finishedJob(command: string): Promise<string> {
    const res = await t.http.post('/v1/jobs').set(AUTH).send({ command });
    expect(res.status).toBe(202);
    await settleAs(t, 'test-token-0123456789abcdef', res.body.id);
    return res.body.id as string;
  }

  /** The job is deleted right after the route found it, before it reads a byte: the window of the race, made certain. */
  async function deletedWhileRead(id: string, query: string) {
    const jobs = t.app.services.jobs;
    const output = jobs.output.bind(jobs);
    jobs.output = async (jobId: string) => {
      const found = await output(jobId);
      if (jobId === id) {
        jobs.output = output;
        await jobs.remove(jobId);
      }
      return found;
    };
    try {
      return await t.http.get(`/v1/jobs/${id}/output${query}`).set(AUTH);
    } finally {
      jobs.output = output;
    }
  }

  it('answers 404 NOT_FOUND, whichever way the bytes would have gone (one read, a stream, a follow)', async () => {
    for (const [command, query] of [
      ['echo hi', ''],
      ['head -c 1000000 /dev/zero', ''], // more than one read: streamed from the file
      ['echo hi', '?follow=true'],
      ['head -c 1000000 /dev/zero', '?follow=true&stream=stdout'],
    ] as const) {
      const id = await finishedJob(command);
      const res = await deletedWhileRead(id, query);
      expect(res.status, `${command} ${query}`).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
      expect(res.headers['content-type']).toMatch(/problem\+json/);
      expect((await t.http.get(`/v1/jobs/${id}`).set(AUTH)).status).toBe(404);
    }
  });

  it('concurrent requests: the output is 200 with every byte or 404, never a 5xx; the server stays healthy', async () => {
    for (let i = 0; i < 20; i++) {
      const id = await finishedJob(i % 2 ? 'head -c 300000 /dev/zero' : 'echo hi');
      const [output, deleted] = await Promise.all([
        t.http.get(`/v1/jobs/${id}/output${i % 4 < 2 ? '' : '?follow=true'}`).set(AUTH).buffer(true),
        t.http.delete(`/v1/jobs/${id}`).set(AUTH),
      ]);
      expect(deleted.status).toBe(204);
      expect([200, 404], String(output.status)).toContain(output.status);
    }
    expect((await t.http.get('/healthz')).status).toBe(200);
  });
});
