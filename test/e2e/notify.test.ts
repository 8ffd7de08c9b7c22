import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { AUTH, ON_REDIS, startApp, type TestApp } from '../helpers/app.js';
import { getJob, settle, submit } from '../helpers/jobs.js';
import { waitFor } from '../helpers/proc.js';

const SERVER_SECRET = 'notify-test-server-secret-0123456789abcdef';
const ENV = {
  EXECD_NOTIFY_ALLOW: 'http://127.0.0.1',
  EXECD_NOTIFY_SECRET: SERVER_SECRET,
  EXECD_NOTIFY_BACKOFF_MS: '100',
  EXECD_NOTIFY_ATTEMPTS: '3',
  EXECD_NOTIFY_TIMEOUT_MS: '3000',
  EXECD_QUEUES: 'default:2,solo:1',
};

interface Received {
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** A callback receiver on 127.0.0.1: records each request and answers with the next of `answers` (then 200). */
class Receiver {
  readonly got: Received[] = [];
  answers: { status: number; headers?: Record<string, string> }[] = [];
  private readonly server: Server;
  url = '';

  constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        this.got.push({ url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
        const answer = this.answers.shift() ?? { status: 200 };
        res.writeHead(answer.status, answer.headers).end('ok');
      });
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  reset(): void {
    this.got.length = 0;
    this.answers = [];
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** What a receiver does (docs/notify.md): recompute the HMAC over "<t>.<body>" with the token's secret, compare in constant time. */
function verify(secret: string, r: Received): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(String(r.headers['x-execd-signature']));
  if (!m || m[1] !== r.headers['x-execd-timestamp']) return false;
  if (Math.abs(Date.now() / 1000 - Number(m[1])) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${m[1]}.${r.body}`).digest();
  return timingSafeEqual(expected, Buffer.from(m[2]!, 'hex'));
}

/** X-Execd-Delivery: the job id and its last attempt (1 without retries), the same for every try of one callback. */
const deliveryId = (job: Job): string => `${job.id}:${(job as { attempt?: number }).attempt ?? 1}`;

/** The job once its callback is no longer pending. */
async function notified(t: TestApp, id: string): Promise<Job> {
  let job: Job | undefined;
  await waitFor(async () => {
    job = await getJob(t, id);
    return job.notify !== null && job.notify.state !== 'pending';
  }, 10_000);
  return job!;
}

let t: TestApp;
let rx: Receiver;
let other: Receiver;
// The token EXECD_TOKEN gives has the id "env": its secret is derived from the server's.
const tokenSecret = createHmac('sha256', SERVER_SECRET).update('execd-notify-v1:env').digest('hex');

beforeAll(async () => {
  [t, rx, other] = await Promise.all([startApp(ENV), new Receiver().start(), new Receiver().start()]);
});
afterAll(async () => {
  await t.close();
  await Promise.all([rx.close(), other.close()]);
});

describe('completion callbacks', () => {
  it('POSTs the ended Job once, signed with the token secret GET /v1/notify/secret tells; the outcome is on the Job', async () => {
    rx.reset();
    const res = await t.http.get('/v1/notify/secret').set(AUTH);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ tokenId: 'env', secret: tokenSecret, signatureHeader: 'X-Execd-Signature' });

    const job = await submit(t, { argv: ['sh', '-c', 'echo hi; exit 3'], notify: { url: `${rx.url}/hook?team=web` } });
    expect(job.notify).toEqual({ url: `${rx.url}/hook?team=web`, state: 'pending', attempts: 0, lastStatus: null, lastError: null, deliveredAt: null });
    expect(job.spec).toMatchObject({ notify: { url: `${rx.url}/hook?team=web` } });
    const done = await notified(t, job.id);
    expect(done.state).toBe('failed');
    expect(done.notify).toMatchObject({ state: 'delivered', attempts: 1, lastStatus: 200, lastError: null });
    expect(Date.parse(done.notify!.deliveredAt!)).toBeGreaterThanOrEqual(Date.parse(done.finishedAt!));

    expect(rx.got).toHaveLength(1);
    const [r] = rx.got;
    expect(r!.url).toBe('/hook?team=web');
    expect(r!.headers['content-type']).toBe('application/json');
    expect(r!.headers['x-execd-delivery']).toBe(deliveryId(done));
    expect(verify(tokenSecret, r!)).toBe(true);
    expect(verify(createHmac('sha256', 'another-server-secret-0123456789abcdef').update('execd-notify-v1:env').digest('hex'), r!)).toBe(false);
    expect(verify(tokenSecret, { ...r!, body: r!.body.replace('"failed"', '"succeeded"') })).toBe(false); // a changed body fails
    const body = JSON.parse(r!.body) as Job;
    expect(body).toMatchObject({ id: job.id, state: 'failed', result: { exitCode: 3 }, outputBytes: { stdout: 3 } });

    // At least once, and once only here: on Redis both nodes hear the job end and one of them takes the callback on.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(rx.got).toHaveLength(1);
    if (!ON_REDIS) {
      const metrics = await t.http.get('/metrics').set(AUTH);
      expect(metrics.text).toMatch(/^execd_notify_deliveries_total\{outcome="delivered"\} [1-9]/m);
    }
  });

  it('tries again after a 500, with backoff and the same delivery id, each try signed afresh', async () => {
    rx.reset();
    rx.answers = [{ status: 500 }];
    const job = await submit(t, { argv: ['true'], notify: { url: `${rx.url}/again` } });
    const done = await notified(t, job.id);
    expect(done.notify).toMatchObject({ state: 'delivered', attempts: 2, lastStatus: 200, lastError: null });
    expect(rx.got).toHaveLength(2);
    expect(rx.got.map((r) => r.headers['x-execd-delivery'])).toEqual([deliveryId(done), deliveryId(done)]);
    expect(rx.got.map((r) => r.headers['x-execd-delivery-attempt'])).toEqual(['1', '2']);
    expect(rx.got.every((r) => verify(tokenSecret, r))).toBe(true);
    expect(rx.got[1]!.at - rx.got[0]!.at).toBeGreaterThanOrEqual(90); // EXECD_NOTIFY_BACKOFF_MS=100
    if (!ON_REDIS) {
      const metrics = await t.http.get('/metrics').set(AUTH);
      expect(metrics.text).toMatch(/^execd_notify_deliveries_total\{outcome="retried"\} [1-9]/m);
    }
  });

  it('never follows a redirect: a 302 is a failed try, the other server gets nothing, and it fails after EXECD_NOTIFY_ATTEMPTS', async () => {
    rx.reset();
    other.reset();
    rx.answers = [1, 2, 3].map(() => ({ status: 302, headers: { location: `${other.url}/stolen` } }));
    const job = await submit(t, { argv: ['true'], notify: { url: `${rx.url}/moved` } });
    const done = await notified(t, job.id);
    expect(done.notify).toMatchObject({ state: 'failed', attempts: 3, lastStatus: 302, deliveredAt: null });
    expect(done.notify!.lastError).toMatch(/redirects are not followed.*gave up after 3 tries/);
    expect(rx.got).toHaveLength(3);
    expect(other.got).toHaveLength(0);
  });

  it('takes a 4xx answer as final: one try, failed', async () => {
    rx.reset();
    rx.answers = [{ status: 401 }];
    const job = await submit(t, { argv: ['true'], notify: { url: `${rx.url}/no` } });
    const done = await notified(t, job.id);
    expect(done.notify).toMatchObject({ state: 'failed', attempts: 1, lastStatus: 401 });
    expect(done.notify!.lastError).toMatch(/401; not retried/);
    expect(rx.got).toHaveLength(1);
  });

  it('notifies a job canceled while it was queued too', async () => {
    rx.reset();
    const blocker = await submit(t, { argv: ['sleep', '30'], queue: 'solo' });
    const job = await submit(t, { argv: ['true'], queue: 'solo', notify: { url: `${rx.url}/canceled` } });
    expect(job.state).toBe('queued');
    expect((await t.http.post(`/v1/jobs/${job.id}/cancel`).set(AUTH)).body.state).toBe('canceled');
    const done = await notified(t, job.id);
    expect(done.notify).toMatchObject({ state: 'delivered', attempts: 1 });
    expect(JSON.parse(rx.got[0]!.body)).toMatchObject({ id: job.id, state: 'canceled', startedAt: null });
    await t.http.post(`/v1/jobs/${blocker.id}/cancel`).set(AUTH);
    expect((await settle(t, blocker.id)).state).toBe('canceled');
  });

  it('waits for the last attempt of a retried job: one callback, its delivery id names that attempt', async () => {
    rx.reset();
    const job = await submit(t, { argv: ['false'], retry: { attempts: 2, backoffMs: 10 }, notify: { url: `${rx.url}/retried` } });
    const done = await notified(t, job.id);
    expect(done).toMatchObject({ state: 'failed', attempt: 2, notify: { state: 'delivered', attempts: 1 } });
    expect(rx.got).toHaveLength(1);
    expect(rx.got[0]!.headers['x-execd-delivery']).toBe(`${job.id}:2`);
    expect(JSON.parse(rx.got[0]!.body)).toMatchObject({ id: job.id, state: 'failed', attempt: 2 });
  });

  it('refuses at submit (403 naming EXECD_NOTIFY_ALLOW) a host outside the allowlist, or http:// where only https is listed', async () => {
    for (const url of ['https://hooks.example.com/x', 'http://127.0.0.2:8080/x', 'http://169.254.169.254/latest/meta-data']) {
      const res = await t.http.post('/v1/jobs').set(AUTH).send({ argv: ['true'], notify: { url } });
      expect(res.status, url).toBe(403);
      expect(res.body).toMatchObject({ code: 'FORBIDDEN', setting: 'EXECD_NOTIFY_ALLOW' });
      expect(res.body.detail).toMatch(/not allowed by EXECD_NOTIFY_ALLOW/);
    }
    for (const url of ['ftp://127.0.0.1/x', 'http://user:pw@127.0.0.1/x', 'not a url']) {
      const res = await t.http.post('/v1/jobs').set(AUTH).send({ argv: ['true'], notify: { url } });
      expect(res.status, url).toBe(400);
    }
    const list = await t.http.get('/v1/jobs?limit=1000').set(AUTH);
    expect((list.body.items as Job[]).some((j) => j.spec.notify?.url.includes('example.com'))).toBe(false);
  });
});

describe('completion callbacks on a server without EXECD_NOTIFY_ALLOW', () => {
  let bare: TestApp;
  beforeAll(async () => {
    bare = await startApp();
  });
  afterAll(() => bare.close());

  it('refuses every job that asks for one with a 403 that names the setting; a job without one shows notify null', async () => {
    const res = await bare.http.post('/v1/jobs').set(AUTH).send({ argv: ['true'], notify: { url: 'https://hooks.example.com/x' } });
    expect(res.status).toBe(403);
    expect(res.body.detail).toMatch(/EXECD_NOTIFY_ALLOW is empty/);
    expect((await bare.http.get('/v1/notify/secret').set(AUTH)).status).toBe(404);
    const job = await submit(bare, { argv: ['true'] });
    expect(job.notify).toBeNull();
  });
});
