import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { Job } from '../../../src/schemas/jobs.js';
import type { JobBackend, QueueDeps } from '../../../src/queue/backend.js';
import { Conflict, JobNotFound, QueueFull, ShuttingDown, UnknownQueue } from '../../../src/queue/errors.js';
import { QueueFront } from '../../../src/queue/front.js';
import { newJobRecord } from '../../../src/queue/job.js';
import { toJobView } from '../../../src/queue/view.js';

const job = (state: Job['state'] = 'queued'): Job => ({
  ...toJobView(newJobRecord('j1', 1, 'default', { argv: ['true'] }, 1000), null, { stdout: 0, stderr: 0 }),
  state,
});

/** A backend that answers what the test says: the front's translation of its answers is what is checked. */
function fakeBackend(answers: Partial<JobBackend>): JobBackend {
  const unused = () => Promise.reject(new Error('not used by this test'));
  return {
    name: 'fake',
    queueNames: ['default'],
    events: new EventEmitter(),
    accept: unused,
    view: async () => undefined,
    ownerOf: async () => undefined,
    list: async () => ({ items: [], nextCursor: null }),
    output: async () => undefined,
    queues: async () => [],
    cancel: async () => ({ kind: 'unknown' }),
    control: async () => ({ kind: 'unknown' }),
    remove: async () => ({ kind: 'unknown' }),
    recordNotify: async () => false,
    claim: async () => null,
    markStarted: async () => {},
    finish: async () => {},
    drain: async () => {},
    close: async (drained) => drained,
    ...answers,
  };
}

const deps = {} as QueueDeps;
const config = { killGraceMs: 10, pipeDrainMs: 10 };
const front = (answers: Partial<JobBackend>) => new QueueFront(config, deps, () => fakeBackend(answers));
const submit = { queue: 'default', spec: { argv: ['true'] }, ownerId: 'ci', grant: {} as never };

describe('QueueFront: the backend answers values, the front turns them into domain errors', () => {
  it('submit: created and duplicate pass through; conflict and full are Conflict and QueueFull; an unknown queue never reaches the backend', async () => {
    expect(await front({ accept: async () => ({ kind: 'created', job: job() }) }).submit(submit)).toMatchObject({ created: true });
    expect(await front({ accept: async () => ({ kind: 'duplicate', job: job() }) }).submit(submit)).toMatchObject({ created: false });
    await expect(front({ accept: async () => ({ kind: 'conflict', jobId: 'j0' }) }).submit(submit)).rejects.toMatchObject({
      constructor: Conflict,
      details: { jobId: 'j0' },
    });
    await expect(front({ accept: async () => ({ kind: 'full', capacity: 3 }) }).submit(submit)).rejects.toBeInstanceOf(QueueFull);
    await expect(front({}).submit({ ...submit, queue: 'nope' })).rejects.toBeInstanceOf(UnknownQueue);
    await expect(front({}).list({ queue: 'nope', limit: 1 })).rejects.toBeInstanceOf(UnknownQueue);
  });

  it('the idempotency digest is the same for the same body whatever its key order, and differs for another body', async () => {
    const digests: (string | undefined)[] = [];
    const q = front({ accept: async (a) => (digests.push(a.idempotency?.digest), { kind: 'created', job: job() }) });
    await q.submit({ ...submit, spec: { argv: ['true'], timeoutMs: 5 }, idempotencyKey: 'k' });
    await q.submit({ ...submit, spec: { timeoutMs: 5, argv: ['true'] }, idempotencyKey: 'k' });
    await q.submit({ ...submit, spec: { argv: ['false'] }, idempotencyKey: 'k' });
    expect(digests[0]).toBe(digests[1]);
    expect(digests[2]).not.toBe(digests[0]);
  });

  it('signal, cancel and remove: unknown is JobNotFound, not running or not terminal is Conflict with the state', async () => {
    await expect(front({}).signal('x', 'SIGTERM')).rejects.toBeInstanceOf(JobNotFound);
    await expect(front({ control: async () => ({ kind: 'not-running', state: 'queued' }) }).signal('x', 'SIGTERM')).rejects.toMatchObject({
      constructor: Conflict,
      details: { state: 'queued' },
    });
    await expect(front({ control: async () => ({ kind: 'delivered', ok: false }) }).signal('x', 'SIGTERM')).rejects.toBeInstanceOf(Conflict);
    await expect(front({}).cancel('x')).rejects.toBeInstanceOf(JobNotFound);
    await expect(front({}).remove('x')).rejects.toBeInstanceOf(JobNotFound);
    await expect(front({ remove: async () => ({ kind: 'not-terminal', state: 'running' }) }).remove('x')).rejects.toBeInstanceOf(Conflict);
    expect(await front({ control: async () => ({ kind: 'not-running', state: 'succeeded' }) }).writeStdin('x', null)).toBe(false);
  });

  it('refuses new jobs with ShuttingDown from the first moment of a drain', async () => {
    const q = front({ accept: async () => ({ kind: 'created', job: job() }) });
    void q.drain();
    await expect(q.submit(submit)).rejects.toBeInstanceOf(ShuttingDown);
    await q.close();
  });
});
