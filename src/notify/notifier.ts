import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import { isTerminal, type JobQueue } from '../queue/index.js';
import type { Job } from '../schemas/jobs.js';
import { notifyRequestOf, type NotifyStatus } from '../schemas/notify.js';
import { checkNotifyUrl } from './allow.js';
import { postOnce, type AttemptResult, type Resolver } from './deliver.js';
import { signature, tokenSecret } from './sign.js';

/** What /metrics counts (execd_notify_deliveries_total{outcome}): a try that will be repeated, or how a callback ended. */
export type DeliveryOutcome = 'delivered' | 'retried' | 'failed' | 'dropped';

export type NotifyConfig = Pick<
  Config,
  'notifyAllow' | 'notifySecret' | 'notifyTimeoutMs' | 'notifyAttempts' | 'notifyBackoffMs' | 'notifyMaxBodyBytes' | 'notifyMaxPending'
>;

export interface NotifierDeps {
  jobs: Pick<JobQueue, 'events' | 'recordNotify'>;
  log: FastifyBaseLogger;
  onOutcome?: (outcome: DeliveryOutcome) => void;
  /** Name resolution (tests); the system resolver by default. */
  resolve?: Resolver;
}

/** Longest wait between two tries, whatever EXECD_NOTIFY_BACKOFF_MS says. */
const MAX_BACKOFF_MS = 300_000;

interface Delivery {
  /** `<job id>:<job attempt>`: the X-Execd-Delivery header, the same for every try (receivers dedupe on it). */
  id: string;
  /** Ends the backoff wait early, false: the server is closing. */
  wake: ((go: boolean) => void) | null;
}

/** The callback body: the Job as it ended; a Job larger than the cap goes without its spec (`specOmitted: true`). */
export function callbackBody(job: Job, maxBytes: number): Buffer {
  const whole = Buffer.from(JSON.stringify(job));
  if (whole.length <= maxBytes) return whole;
  const { spec: _omitted, ...rest } = job;
  return Buffer.from(JSON.stringify({ ...rest, specOmitted: true }));
}

/**
 * Completion callbacks (docs/notify.md). Listens for jobs that end; for one that asked for a callback, the node that
 * first records it on the job (JobQueue.recordNotify with `first`: on Redis, whichever node hears the end first)
 * POSTs the Job, signed with its owner's secret, trying again with exponential backoff until a 2xx answer, a final
 * refusal, or EXECD_NOTIFY_ATTEMPTS tries; each try's outcome is written to the job. Deliveries live in this process:
 * close() lets the tries in flight end (each is bounded by EXECD_NOTIFY_TIMEOUT_MS) and gives up the waiting ones.
 */
export class Notifier {
  private readonly deliveries = new Map<string, Delivery>();
  private readonly running = new Set<Promise<void>>();
  private closed = false;
  private readonly onFinished = (job: Job, ownerId: string | null) => this.finished(job, ownerId);

  constructor(
    private readonly config: NotifyConfig,
    private readonly deps: NotifierDeps,
  ) {
    // A node without callbacks configured never takes one on: a node that has them delivers it.
    if (config.notifyAllow.length > 0 && config.notifySecret !== undefined) deps.jobs.events.on('finished', this.onFinished);
  }

  /** Callbacks waiting or in flight here. */
  get pending(): number {
    return this.deliveries.size;
  }

  /** Stop taking callbacks on; resolves once the tries in flight ended and the waiting ones were given up. Idempotent. */
  async close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.deps.jobs.events.off('finished', this.onFinished);
      for (const d of this.deliveries.values()) d.wake?.(false);
    }
    await Promise.all([...this.running]);
  }

  private finished(job: Job, ownerId: string | null): void {
    if (!isTerminal(job.state) || this.closed) return;
    const request = notifyRequestOf(job.spec);
    if (!request) return;
    const attempt = (job as { attempt?: unknown }).attempt;
    const id = `${job.id}:${typeof attempt === 'number' ? attempt : 1}`;
    if (this.deliveries.has(id)) return;
    const run = this.run(job, ownerId, request.url, id).catch((err: unknown) => this.deps.log.error({ err, jobId: job.id }, 'completion callback failed'));
    this.running.add(run);
    void run.finally(() => this.running.delete(run));
  }

  private async run(job: Job, ownerId: string | null, url: string, id: string): Promise<void> {
    let status: NotifyStatus = { url, state: 'pending', attempts: 0, lastStatus: null, lastError: null, deliveredAt: null };
    if (this.deliveries.size >= this.config.notifyMaxPending) {
      status = { ...status, state: 'failed', lastError: 'not sent: too many callbacks pending on this node (EXECD_NOTIFY_MAX_PENDING)' };
      await this.record(job.id, status, true);
      this.count('dropped');
      return;
    }
    const delivery: Delivery = { id, wake: null };
    this.deliveries.set(id, delivery);
    try {
      // One node delivers: the one whose record of "pending" comes first. With the backend away, deliver anyway
      // (at least once: a receiver dedupes on X-Execd-Delivery).
      const mine = await this.deps.jobs.recordNotify(job.id, status, true).catch((err: unknown) => {
        this.deps.log.warn({ err, jobId: job.id }, 'completion callback: could not record it on the job; delivering anyway');
        return true;
      });
      if (!mine) return;
      await this.deliver(job, ownerId, delivery, status);
    } finally {
      this.deliveries.delete(id);
    }
  }

  private async deliver(job: Job, ownerId: string | null, delivery: Delivery, initial: NotifyStatus): Promise<void> {
    const { config } = this;
    const body = callbackBody(job, config.notifyMaxBodyBytes);
    const secret = tokenSecret(config.notifySecret!, ownerId ?? '');
    let status = initial;
    for (let n = 1; ; n++) {
      const result = await this.attempt(status.url, body, secret, delivery.id, n);
      const final = result.kind !== 'retry' || n >= config.notifyAttempts || this.closed;
      status = {
        url: status.url,
        state: result.kind === 'delivered' ? 'delivered' : final ? 'failed' : 'pending',
        attempts: n,
        lastStatus: result.status,
        lastError: result.kind === 'delivered' ? null : result.error,
        deliveredAt: result.kind === 'delivered' ? new Date().toISOString() : null,
      };
      if (result.kind === 'retry' && final) status.lastError += this.closed ? '; not tried again: the server shut down' : `; gave up after ${n} tries`;
      await this.record(job.id, status, false);
      const log = { jobId: job.id, delivery: delivery.id, url: status.url, attempts: n, status: result.status };
      if (status.state === 'delivered') {
        this.deps.log.debug(log, 'completion callback delivered');
        this.count('delivered');
        return;
      }
      if (status.state === 'failed') {
        this.deps.log.warn({ ...log, error: status.lastError }, 'completion callback failed');
        this.count('failed');
        return;
      }
      this.count('retried');
      const backoff = Math.min(config.notifyBackoffMs * 2 ** (n - 1), MAX_BACKOFF_MS) * (1 + Math.random() * 0.1);
      if (!(await this.sleep(delivery, backoff))) {
        status = { ...status, state: 'failed', lastError: `${status.lastError}; not tried again: the server shut down` };
        await this.record(job.id, status, false);
        this.count('failed');
        return;
      }
    }
  }

  private attempt(url: string, body: Buffer, secret: string, deliveryId: string, n: number): Promise<AttemptResult> {
    // Checked again at each try: the node delivering may not be the one that accepted the job.
    const verdict = checkNotifyUrl(url, this.config.notifyAllow);
    if (!verdict.ok) return Promise.resolve({ kind: 'give-up', status: null, error: verdict.reason });
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'execd-notify/1',
      'x-execd-delivery': deliveryId,
      'x-execd-delivery-attempt': String(n),
      'x-execd-timestamp': String(timestamp),
      'x-execd-signature': signature(secret, timestamp, body),
    };
    return postOnce(verdict.target, body, headers, this.config.notifyTimeoutMs, this.deps.resolve);
  }

  /** Wait `ms`; false when close() came first. */
  private sleep(delivery: Delivery, ms: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => delivery.wake?.(true), ms).unref();
      delivery.wake = (go) => {
        clearTimeout(timer);
        delivery.wake = null;
        resolve(go);
      };
    });
  }

  private async record(jobId: string, status: NotifyStatus, first: boolean): Promise<boolean> {
    try {
      return await this.deps.jobs.recordNotify(jobId, status, first);
    } catch (err) {
      this.deps.log.warn({ err, jobId }, 'completion callback: could not record its outcome on the job');
      return false;
    }
  }

  private count(outcome: DeliveryOutcome): void {
    this.deps.onOutcome?.(outcome);
  }
}
