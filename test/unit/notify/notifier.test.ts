import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../src/config.js';
import { Notifier, type DeliveryOutcome } from '../../../src/notify/notifier.js';
import type { JobQueueEvents } from '../../../src/queue/types.js';
import type { Job } from '../../../src/schemas/jobs.js';
import type { NotifyStatus } from '../../../src/schemas/notify.js';
import { waitFor } from '../../helpers/proc.js';

let server: Server;
let url = '';
let hits = 0;
let status = 500;
beforeAll(async () => {
  server = createServer((req, res) => {
    hits++;
    req.resume();
    req.on('end', () => res.writeHead(status).end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
});
afterAll(() => new Promise((resolve) => server.close(resolve)));

/** A queue that only has events and keeps what recordNotify was told, per job (first: only the first). */
function fakeJobs() {
  const events = new EventEmitter<JobQueueEvents>();
  const records = new Map<string, NotifyStatus[]>();
  return {
    events,
    records,
    async recordNotify(id: string, s: NotifyStatus, first: boolean) {
      if (first && records.has(id)) return false;
      records.set(id, [...(records.get(id) ?? []), s]);
      return true;
    },
  };
}

const config = (env: Record<string, string>) =>
  parseConfig({
    EXECD_TOKEN: 'unit-test-token-0123456789',
    EXECD_NOTIFY_SECRET: 's'.repeat(32),
    EXECD_NOTIFY_ALLOW: 'http://127.0.0.1',
    EXECD_NOTIFY_BACKOFF_MS: '60000',
    ...env,
  });
const ended = (id: string): Job => ({ id, state: 'succeeded', spec: { argv: ['true'], notify: { url } } }) as unknown as Job;
const log = pino({ level: 'silent' });

describe('Notifier', () => {
  it('gives up a callback waiting its backoff at close(), records it failed, and delivers nothing more', async () => {
    hits = 0;
    status = 500;
    const jobs = fakeJobs();
    const outcomes: DeliveryOutcome[] = [];
    const n = new Notifier(config({}), { jobs, log, onOutcome: (o) => outcomes.push(o) });
    jobs.events.emit('finished', ended('a'), 'ci');
    expect(await waitFor(() => outcomes.includes('retried'))).toBe(true);
    expect(n.pending).toBe(1);
    await n.close();
    expect(n.pending).toBe(0);
    expect(outcomes).toEqual(['retried', 'failed']);
    expect(jobs.records.get('a')!.at(-1)).toMatchObject({ state: 'failed', attempts: 1, lastStatus: 500, lastError: expect.stringMatching(/server shut down/) });
    jobs.events.emit('finished', ended('b'), 'ci'); // closed: not taken on
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(jobs.records.has('b')).toBe(false);
    expect(hits).toBe(1);
  });

  it('takes on a callback only once per job, fails the ones beyond EXECD_NOTIFY_MAX_PENDING at once, ignores non-terminal states', async () => {
    hits = 0;
    status = 500;
    const jobs = fakeJobs();
    const outcomes: DeliveryOutcome[] = [];
    const n = new Notifier(config({ EXECD_NOTIFY_MAX_PENDING: '1' }), { jobs, log, onOutcome: (o) => outcomes.push(o) });
    jobs.events.emit('finished', ended('a'), 'ci');
    jobs.events.emit('finished', ended('a'), 'ci'); // the same end heard twice (two nodes' events on one): one delivery
    jobs.events.emit('finished', ended('b'), 'ci');
    jobs.events.emit('finished', { ...ended('c'), state: 'running' } as Job, 'ci');
    expect(await waitFor(() => outcomes.includes('retried') && outcomes.includes('dropped'))).toBe(true);
    expect(jobs.records.get('b')).toEqual([expect.objectContaining({ state: 'failed', attempts: 0, lastError: expect.stringMatching(/EXECD_NOTIFY_MAX_PENDING/) })]);
    expect(jobs.records.has('c')).toBe(false);
    await n.close();
    expect(hits).toBe(1);
  });

  it('listens to nothing on a node without EXECD_NOTIFY_ALLOW', () => {
    const jobs = fakeJobs();
    const n = new Notifier(parseConfig({ EXECD_TOKEN: 'unit-test-token-0123456789' }), { jobs, log });
    expect(jobs.events.listenerCount('finished')).toBe(0);
    void n.close();
  });
});
