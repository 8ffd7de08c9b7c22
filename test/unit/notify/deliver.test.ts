import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config.js';
import { checkNotifyUrl, type AllowedTarget } from '../../../src/notify/allow.js';
import { postOnce } from '../../../src/notify/deliver.js';
import { callbackBody } from '../../../src/notify/notifier.js';
import { signature, tokenSecret } from '../../../src/notify/sign.js';
import type { Job } from '../../../src/schemas/jobs.js';

let server: Server;
let port = 0;
let hits = 0;
let hang = false;
beforeAll(async () => {
  server = createServer((req, res) => {
    hits++;
    if (hang) return; // never answers: the client's timeout must end it
    req.resume();
    req.on('end', () => res.writeHead(204).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const allowOf = (value: string) => parseConfig({ EXECD_TOKEN: 'unit-test-token-0123456789', EXECD_NOTIFY_SECRET: 's'.repeat(32), EXECD_NOTIFY_ALLOW: value }).notifyAllow;
const targetOf = (url: string, allow: string): AllowedTarget => {
  const v = checkNotifyUrl(url, allowOf(allow));
  if (!v.ok) throw new Error(v.reason);
  return v.target;
};
/** A resolver that says every name is 127.0.0.1, as a hostile DNS answer would. */
const toLoopback = async () => [{ address: '127.0.0.1', family: 4 }];
const body = Buffer.from('{}');

describe('postOnce', () => {
  it('refuses a name that resolves to loopback through a *.suffix entry: nothing is sent', async () => {
    hits = 0;
    const target = targetOf(`http://hooks.rebind.example:${port}/x`, 'http://*.rebind.example');
    const r = await postOnce(target, body, {}, 1000, toLoopback);
    expect(r).toMatchObject({ kind: 'give-up', status: null });
    expect(r.kind !== 'delivered' && r.error).toMatch(/resolves to 127\.0\.0\.1: .*listed by name in EXECD_NOTIFY_ALLOW/);
    expect(hits).toBe(0);
  });

  it('connects to the checked address when the name is listed: the pinned lookup, not the system resolver, decides', async () => {
    hits = 0;
    const target = targetOf(`http://hooks.rebind.example:${port}/x`, 'http://hooks.rebind.example');
    expect(await postOnce(target, body, {}, 1000, toLoopback)).toEqual({ kind: 'delivered', status: 204 });
    expect(hits).toBe(1);
  });

  it('refuses 0.0.0.0 even when listed', async () => {
    const target = targetOf(`http://0.0.0.0:${port}/x`, 'http://0.0.0.0');
    expect(await postOnce(target, body, {}, 1000)).toMatchObject({ kind: 'give-up' });
  });

  it('ends a try the receiver never answers at the timeout, as one to repeat', async () => {
    hang = true;
    try {
      const started = Date.now();
      const r = await postOnce(targetOf(`http://127.0.0.1:${port}/slow`, 'http://127.0.0.1'), body, {}, 200);
      expect(r).toMatchObject({ kind: 'retry', status: null, error: expect.stringMatching(/no answer within 200 ms/) });
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      hang = false;
    }
  });

  it('takes a refused connection as one to repeat', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const gone = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const r = await postOnce(targetOf(`http://127.0.0.1:${gone}/`, 'http://127.0.0.1'), body, {}, 1000);
    expect(r).toMatchObject({ kind: 'retry', error: expect.stringMatching(/ECONNREFUSED/) });
  });
});

describe('signing and the body', () => {
  it('derives a per-token secret and signs "<t>.<body>" as documented', () => {
    const secret = tokenSecret('server-secret', 'ci');
    expect(secret).toBe(createHmac('sha256', 'server-secret').update('execd-notify-v1:ci').digest('hex'));
    expect(tokenSecret('server-secret', 'other')).not.toBe(secret);
    const mac = createHmac('sha256', secret).update('1700000000.{"a":1}').digest('hex');
    expect(signature(secret, 1700000000, '{"a":1}')).toBe(`t=1700000000,v1=${mac}`);
  });

  it('sends a Job over EXECD_NOTIFY_MAX_BODY_BYTES without its spec', () => {
    const job = { id: 'j1', state: 'succeeded', spec: { command: 'x'.repeat(5000) } } as unknown as Job;
    expect(JSON.parse(callbackBody(job, 100_000).toString())).toEqual(job);
    expect(JSON.parse(callbackBody(job, 1024).toString())).toEqual({ id: 'j1', state: 'succeeded', specOmitted: true });
  });
});
