import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { Queue } from 'bullmq';
import type { Config } from '../../config.js';
import { killTagged } from '../../runner/tagged.js';
import type { Job, JobList, QueueInfo } from '../../schemas/jobs.js';
import type { NotifyStatus } from '../../schemas/notify.js';
import type {
  Acceptance, Accepted, BackendHooks, CancelOutcome, ControlOutcome, JobBackend, QueueDeps, RemoveOutcome,
} from '../backend.js';
import { QueueFull } from '../errors.js';
import { newJobId } from '../id.js';
import { newJobRecord, type JobError, type JobResult, type JobState, type TerminalState } from '../job.js';
import type { JobOutputReader } from '../job-output.js';
import type { ControlMessage, LocalRun } from '../local-runs.js';
import { maxAttempts } from '../retry.js';
import type { JobQueueEvents, ListRequest } from '../types.js';
import { redactSpec, toJobView } from '../view.js';
import { Scripts } from './commands.js';
import { Connections, UNAVAILABLE_MS, withTimeout } from './connections.js';
import { ControlChannel } from './control.js';
import { Mirrors } from './mirrors.js';
import { Reads } from './reads.js';
import { WorkerNode, type RedisClaim } from './worker-node.js';

/** The Job's `notify` (src/notify): set on a record that still exists; with ARGV[2] '1' only when none is set yet (one node delivers). */
const RECORD_NOTIFY = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] == '1' and redis.call('HEXISTS', KEYS[1], 'notify') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'notify', ARGV[1])
return 1`;

/** How often each node queues the scheduled jobs whose time has come (PROMOTE). */
const PROMOTE_MS = 100;

/** A submit not confirmed (BullMQ's add done) within this long, by Redis's clock, was never accepted: it never runs. */
const CONFIRM_MS = 5_000;

/**
 * The Redis backend (EXECD_QUEUE_BACKEND=redis): any number of processes
 * share queues, job records and output. BullMQ carries each job to one
 * worker (FIFO per queue, per-node concurrency from EXECD_QUEUES); the
 * records, their states and the output streams are execd's own keys, changed
 * only by the Lua scripts of lua/ (commands.ts). See docs/redis.md.
 */
export class RedisBackend implements JobBackend<RedisClaim> {
  readonly name = 'redis';
  readonly events = new EventEmitter<JobQueueEvents>();
  readonly queueNames: readonly string[];
  private readonly prefix: string;
  private readonly conns: Connections;
  private readonly scripts: Scripts;
  private readonly reads: Reads;
  private readonly control_: ControlChannel;
  private readonly mirrors: Mirrors | null;
  private readonly worker: WorkerNode | null;
  private readonly bullQueues = new Map<string, Queue>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly host: string;
  private readonly instance: string;
  /** Set by close: no more BullMQ queues are made, no more promotions. */
  private closing = false;

  constructor(
    private readonly config: Config,
    private readonly deps: QueueDeps,
    hooks: BackendHooks,
  ) {
    const nodeId = config.nodeId;
    this.prefix = config.redisPrefix;
    this.queueNames = config.queues.map((q) => q.name);
    this.conns = new Connections(config.redisUrl!, nodeId, deps.log);
    this.scripts = new Scripts(this.conns.cmd, this.prefix);
    const runsJobs = config.role !== 'api';
    this.reads = new Reads(this.conns, this.scripts, this.prefix, config, { nodeId, runsJobs });
    this.control_ = new ControlChannel(this.conns, this.conns.open('sub', this.conns.patient), this.prefix, nodeId, runsJobs, hooks.runs, this.events, {
      ended: hooks.ended,
      removed: (id) => this.mirrors?.drop(id),
      failed: (err) => deps.log.error({ err }, 'control message failed'),
    });
    if (config.role !== 'worker') {
      const bullConn = this.conns.open('bull', this.conns.failFast);
      for (const q of config.queues) {
        const queue = new Queue(q.name, { connection: bullConn, prefix: `${this.prefix}:bull` });
        queue.on('error', (err) => this.conns.redisError(err, 'queue'));
        this.bullQueues.set(q.name, queue);
      }
      this.mirrors = new Mirrors(this.conns, this.prefix, deps.filesDir, config.outputMemoryBytes, deps.log);
    } else {
      this.mirrors = null;
    }
    this.host = hostname();
    this.instance = deps.runContext.marker?.EXECD_INSTANCE ?? nodeId;
    if (runsJobs) {
      this.worker = new WorkerNode(this.conns, this.prefix, nodeId, this.instance, config, deps, hooks.runs, CONFIRM_MS, hooks.work);
      void this.worker.beat();
      this.every(Math.max(100, Math.floor(config.redisStallMs / 5)), () => this.worker!.beat());
    } else {
      this.worker = null;
    }
    this.every(Math.max(100, Math.floor(config.redisStallMs / 4)), () => this.reap());
    this.every(PROMOTE_MS, () => this.promote());
  }

  async accept({ queue, spec, ownerId, grant, idempotency, runAt }: Acceptance): Promise<Accepted> {
    const bull = this.bullQueues.get(queue)!;
    const id = newJobId();
    const now = Date.now();
    const secret = spec.env !== undefined || typeof spec.stdin === 'string' ? JSON.stringify({ env: spec.env, stdin: spec.stdin }) : '';
    const redacted = redactSpec(spec);
    const r = await this.conns.call(() =>
      this.scripts.submit({
        id, queue, now, owner: JSON.stringify(ownerId), spec: JSON.stringify(redacted), secret, grant: JSON.stringify(grant),
        digest: idempotency?.digest ?? '', capacity: this.config.queueCapacity, confirmMs: CONFIRM_MS,
        idempotencyKey: idempotency ? `${this.prefix}:idem:${ownerId}:${idempotency.key}` : '',
        runAt, node: this.config.nodeId, maxAttempts: maxAttempts(spec),
      }),
    );
    if (r.kind === 'dup') {
      // The earlier submit with this key may be a moment from its confirmation (two racing requests): wait a little.
      for (const until = Date.now() + UNAVAILABLE_MS; ; ) {
        const job = await this.view(r.jobId);
        if (job) return { kind: 'duplicate', job };
        if (Date.now() > until) break;
        await new Promise((done) => setTimeout(done, 20));
      }
      // the earlier submit with this key is still being confirmed (or failed and is being forgotten)
      throw new QueueFull('a job with this Idempotency-Key is still being accepted; try again shortly');
    }
    if (r.kind === 'conflict') return { kind: 'conflict', jobId: r.jobId };
    if (r.kind === 'full') return { kind: 'full', capacity: this.config.queueCapacity };
    // Accepted once BullMQ has the job AND the record says so (CONFIRM). A submit that fails in between is
    // answered 503 and never runs: its record is forgotten now, or by REAP once its confirmation time is over.
    try {
      // A delayed start goes to BullMQ with its delay (its worker takes it on time); PROMOTE hands it over again in any case.
      const delay = runAt === null ? undefined : Math.max(0, runAt - now);
      await withTimeout(bull.add('job', { id }, { jobId: id, attempts: 1, delay, removeOnComplete: true, removeOnFail: true }), UNAVAILABLE_MS);
      if (!(await this.scripts.confirm(id))) throw new Error(`job ${id} was abandoned before its confirmation`);
    } catch (err) {
      void this.scripts.abandon(id).catch(() => {});
      throw this.conns.unavailable(err);
    }
    const record = newJobRecord(id, r.seq, queue, redacted, now, { ownerId, grant: null });
    const placed = { ...record, node: this.config.nodeId, ...(runAt === null ? {} : { state: 'scheduled' as const, runAt }) };
    return { kind: 'created', job: toJobView(placed, runAt === null ? r.position : null, { stdout: 0, stderr: 0 }) };
  }

  view(id: string): Promise<Job | undefined> {
    return this.reads.view(id);
  }

  ownerOf(id: string): Promise<string | null | undefined> {
    return this.reads.ownerOf(id);
  }

  list(request: ListRequest): Promise<JobList> {
    return this.reads.list(request);
  }

  queues(): Promise<QueueInfo[]> {
    return this.reads.queues();
  }

  async output(id: string): Promise<JobOutputReader | undefined> {
    return this.mirrors?.output(id);
  }

  async cancel(id: string): Promise<CancelOutcome> {
    const r = await this.conns.call(() => this.scripts.cancel(id, Date.now(), this.config.retainJobs));
    if (r.kind === 'unknown') return { kind: 'unknown' };
    if (r.kind === 'canceled') {
      await this.bullQueues.get((await this.view(id))?.queue ?? '')?.remove(id).catch(() => {}); // tidy only: a worker skips it anyway
    } else if (r.kind === 'running') {
      await this.control_.cancel(r.node, id, r.attempt);
      return { kind: 'stopping' };
    }
    return { kind: 'settled' };
  }

  async control(id: string, msg: Exclude<ControlMessage, { op: 'cancel' }>): Promise<ControlOutcome> {
    const { state, node, attempt } = await this.reads.placement(id);
    if (state === null) return { kind: 'unknown' };
    if (state !== 'running') return { kind: 'not-running', state: state as JobState };
    return { kind: 'delivered', ok: await this.control_.request(node!, id, attempt!, msg) };
  }

  async remove(id: string): Promise<RemoveOutcome> {
    const r = await this.conns.call(() => this.scripts.remove(id));
    if (r.kind === 'removed') this.mirrors?.drop(id);
    return r;
  }

  async recordNotify(id: string, status: NotifyStatus, first: boolean): Promise<boolean> {
    const key = `${this.prefix}:job:${id}`;
    return (await this.conns.call(() => this.conns.cmd.eval(RECORD_NOTIFY, 1, key, JSON.stringify(status), first ? '1' : '0'))) === 1;
  }

  claim(id: string, run: LocalRun): Promise<RedisClaim | null> {
    return this.worker!.claim(id, run);
  }

  markStarted(claim: RedisClaim, pid: number): Promise<void> {
    return this.worker!.markStarted(claim, pid);
  }

  finish(claim: RedisClaim, state: TerminalState, result: JobResult | null, error: JobError | null): Promise<void> {
    return this.worker!.finish(claim, state, result, error);
  }

  /**
   * This node takes no new jobs and its workers take no more; the jobs they
   * run go on. Queued jobs stay in Redis for the other workers (and for this
   * one after a restart): with a shared queue, one node's shutdown is not a
   * reason to cancel anyone's work.
   */
  async drain(): Promise<void> {
    await this.worker?.drain();
  }

  async close(drained: Promise<void>): Promise<void> {
    this.closing = true;
    this.conns.markClosing();
    await drained;
    for (const t of this.timers) clearInterval(t);
    this.mirrors?.close();
    this.control_.close();
    await Promise.allSettled([...this.bullQueues.values()].map((q) => q.close()));
    await this.worker?.close();
    await this.conns.quit();
    this.mirrors?.removeFiles();
  }

  /** Declare lost the jobs of workers whose heartbeat is gone (and kill what they left on this host); forget expired jobs. */
  private async reap(): Promise<void> {
    let lost;
    try {
      lost = await this.scripts.reap(Date.now(), this.config.retainMs, this.config.retainJobs);
    } catch {
      return; // Redis away: the next round tries again
    }
    const here = new Set<string>();
    for (const { id, host, instance } of lost) {
      this.deps.log.warn({ jobId: id, host, instance }, 'job lost: its worker stopped answering');
      if (host === this.host && instance && instance !== this.instance) here.add(instance);
    }
    if (here.size > 0) {
      const survivors = await killTagged(here, this.config.killGraceMs).catch(() => []);
      if (survivors.length > 0) this.deps.log.error({ survivors }, 'processes of a lost worker could not be killed');
    }
    this.mirrors?.dropIdle();
  }

  /**
   * Scheduled jobs whose time came are queued (at the back) and handed to BullMQ again under `<id>.<attempt>`: a
   * delivery already on its way (a delayed add, a retry's) is not doubled, and one lost with a node that died
   * between a retry's decision and its add is made good. START runs each attempt once only.
   */
  private async promote(): Promise<void> {
    if (this.closing) return;
    let due;
    try {
      due = await this.scripts.promote(Date.now(), this.queueNames);
    } catch {
      return; // Redis away: the next round tries again
    }
    for (const { id, queue, attempt } of due) {
      await this.deliver(queue, id, attempt).catch((err: unknown) => this.deps.log.warn({ err, jobId: id }, 'a due job could not be handed to a worker'));
    }
  }

  private async deliver(queue: string, id: string, attempt: number): Promise<unknown> {
    const bull = this.bullQueues.get(queue) ?? (this.closing ? null : this.ownQueue(queue));
    if (!bull) throw new Error('this node is closing'); // (its connections are going: no new one)
    const jobId = attempt <= 1 ? id : `${id}.${attempt}`;
    return bull.add('job', { id }, { jobId, attempts: 1, removeOnComplete: true, removeOnFail: true });
  }

  /** A worker-only node has no BullMQ queues of its own until it must hand a job over. */
  private ownQueue(name: string): Queue {
    const queue = new Queue(name, { connection: this.conns.open('bull', this.conns.patient), prefix: `${this.prefix}:bull` });
    queue.on('error', (err) => this.conns.redisError(err, 'queue'));
    this.bullQueues.set(name, queue);
    return queue;
  }

  private every(ms: number, fn: () => Promise<void>): void {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      void fn().finally(() => (busy = false));
    }, ms);
    timer.unref();
    this.timers.push(timer);
  }
}
