import { EventEmitter } from 'node:events';
import { mkdirSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from '../../config.js';
import { ApiError, isApiError } from '../../errors.js';
import type { Job, JobList, QueueInfo } from '../../schemas/jobs.js';
import type { CommandSpec } from '../../schemas/run.js';
import { SERVER_GID, SERVER_UID } from '../../security/identity.js';
import type { Grant } from '../../security/policy.js';
import { killTagged } from '../../ops/recovery.js';
import { startRunRetrying, type RunHandle, type RunSpec } from '../../runner/index.js';
import { returncodeOf } from '../../runner/result.js';
import { newJobId } from '../id.js';
import { requestDigest } from '../idempotency.js';
import { isTerminal, type JobError, type JobRecord, type JobResult, type JobState, type TerminalState } from '../job.js';
import type { QueueDeps } from '../memory.js';
import { finalState, SHUTDOWN_ERROR, startError, toJobResult, withTruncatedReason } from '../outcome.js';
import { StartGate } from '../start-gate.js';
import { writeStdinInTurn } from '../stdin.js';
import type { JobQueue, JobQueueEvents, ListRequest, SubmitRequest, Submitted } from '../types.js';
import { redactSpec, toJobView } from '../view.js';
import { Waiters } from '../waiters.js';
import { OutputMirror, RedisOutputWriter, Tailer } from './output.js';
import * as lua from './scripts.js';

/** Longest wait for Redis on a request before the API answers 503. */
const UNAVAILABLE_MS = 1000;
/** A mirror nobody has read for this long is dropped (it is made again on the next read). */
const MIRROR_IDLE_MS = 30_000;
/** Jobs scanned at most for one list page with filters; the cursor then continues after the last one scanned. */
const LIST_SCAN_MAX = 5000;
/** A worker that has not reached Redis for this share of EXECD_REDIS_STALL_MS kills its running jobs. */
const SELF_FENCE = 0.6;
/** A submit not confirmed (BullMQ's add done) within this long, by Redis's clock, was never accepted: it never runs. */
const CONFIRM_MS = 5_000;
/** BullMQ's job lock (renewed every half) and how often workers look for jobs whose lock lapsed. */
const BULL_LOCK_MS = 4000;
const BULL_STALLED_MS = 2000;
/**
 * Longest wait for a worker's answer to a signal: one sent while the job's process is being started is held
 * there until it exists (a start takes milliseconds; this only bounds a worker that stopped answering).
 */
const SIGNAL_REPLY_MS = 10_000;
/**
 * A streamed stdin write has no deadline while the job runs (a child that reads late only slows the writer):
 * unanswered, it is sent again this often, with the same request id. The worker applies it once and answers
 * each copy, so a lost message or answer is made good; a worker that no longer listens ends the wait.
 */
const STDIN_RESEND_MS = 2000;
/** How long a worker remembers a stdin write's outcome, for a copy sent again because the answer was lost. */
const STDIN_REMEMBER_MS = 10_000;

const SCRIPTS = {
  execdSubmit: lua.SUBMIT,
  execdAbandon: lua.ABANDON,
  execdConfirm: lua.CONFIRM,
  execdStart: lua.START,
  execdStarted: lua.STARTED,
  execdFinish: lua.FINISH,
  execdCancel: lua.CANCEL,
  execdRemove: lua.REMOVE,
  execdView: lua.VIEW,
  execdReap: lua.REAP,
} as const;
type ScriptName = keyof typeof SCRIPTS;
type Scripted = Redis & Record<ScriptName, (...args: (string | number)[]) => Promise<unknown>>;

/** A record's fields as HMGET / the event payloads give them (FIELDS order): strings, false or null when absent. */
type Flat = readonly (string | false | null)[];

interface LocalRun {
  attempt: string | null;
  handle: RunHandle | null;
  /** Opened once the start is over: a signal that arrives before the process exists waits for it here. */
  started: StartGate;
  /** A stop asked for before the process existed. */
  stop: 'cancel' | 'shutdown' | null;
  /** This worker lost Redis and killed the job itself. */
  fenced: boolean;
}

type Request =
  | { op: 'signal'; id: string; attempt: string; signal: NodeJS.Signals }
  | { op: 'stdin'; id: string; attempt: string; data: string | null };
type Control = { op: 'cancel'; id: string; attempt: string } | (Request & { rid: string; from: string });

const str = (v: string | false | null | undefined): string | null => (typeof v === 'string' && v !== '' ? v : null);
const num = (v: string | false | null | undefined): number | null => (str(v) === null ? null : Number(v));

/** A record in the API's shape; null when the fields say there is no such job. */
function viewOf(f: Flat, position: number | false | null): Job | null {
  const state = str(f[3]) as JobState | null;
  // No record, or one whose submit has not been confirmed (its client may yet get a 503): no job to show.
  if (state === null || str(f[14]) !== null) return null;
  const record: JobRecord = {
    id: str(f[0])!,
    seq: Number(f[1]),
    queue: str(f[2])!,
    state,
    createdAt: Number(f[4]),
    startedAt: num(f[5]),
    finishedAt: num(f[6]),
    ownerId: JSON.parse(str(f[7]) ?? 'null') as string | null,
    grant: null,
    spec: JSON.parse(str(f[8]) ?? '{}') as CommandSpec,
    pid: num(f[9]),
    result: withTruncatedReason(JSON.parse(str(f[10]) ?? 'null') as JobResult | null),
    error: JSON.parse(str(f[11]) ?? 'null') as JobError | null,
  };
  return toJobView(record, state === 'queued' && typeof position === 'number' ? position : null, {
    stdout: Number(f[12]) || 0,
    stderr: Number(f[13]) || 0,
  });
}

const ownerOfFlat = (f: Flat): string | null => JSON.parse(str(f[7]) ?? 'null') as string | null;

/**
 * The Redis backend (EXECD_QUEUE_BACKEND=redis): any number of processes
 * share queues, job records and output. BullMQ carries each job to one
 * worker (FIFO per queue, per-node concurrency from EXECD_QUEUES); the
 * records, their states and the output streams are execd's own keys, changed
 * only by the Lua scripts of scripts.ts. See docs/redis.md.
 */
export class RedisJobQueue implements JobQueue {
  readonly backend = 'redis';
  readonly events = new EventEmitter<JobQueueEvents>();
  private readonly prefix: string;
  private readonly nodeId: string;
  private readonly host = hostname();
  private readonly instance: string;
  private readonly runsJobs: boolean;
  /** Requests: fails fast while Redis is away (the API answers 503). */
  private readonly cmd: Scripted;
  /** Worker writes (output, states): wait through an outage. */
  private readonly work: Scripted | null;
  private readonly sub: Redis;
  private readonly bullConn: Redis | null;
  private readonly tailConn: Redis | null;
  private readonly tailer: Tailer | null;
  private readonly bullQueues = new Map<string, Queue>();
  private readonly workers: Worker[] = [];
  /** The connections given to the BullMQ workers (BullMQ does not close a connection it was given). */
  private readonly workerConns: Redis[] = [];
  private readonly local = new Map<string, LocalRun>();
  private readonly mirrors = new Map<string, OutputMirror>();
  private readonly waiters = new Waiters();
  private readonly replies = new Map<string, (ok: boolean) => void>();
  /** Streamed stdin writes on this worker by request id, applied or being applied: a copy sent again is not written twice. */
  private readonly stdinWrites = new Map<string, Promise<boolean>>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly mirrorDir: string;
  private lastBeat = Date.now();
  private rpcSeq = 0;
  private down = false;
  private readonly lastWarned = new Map<string, number>();
  private draining: Promise<void> | null = null;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly config: Config,
    private readonly deps: QueueDeps,
  ) {
    const url = config.redisUrl!;
    this.prefix = config.redisPrefix;
    this.nodeId = config.nodeId;
    this.instance = deps.runContext.marker?.EXECD_INSTANCE ?? this.nodeId;
    this.runsJobs = config.role !== 'api';
    this.mirrorDir = join(deps.filesDir, 'mirror');
    if (config.role !== 'worker') mkdirSync(this.mirrorDir, { recursive: true, mode: 0o700 }); // at start, inside the instance's private directory
    const named = (name: string, options: RedisOptions): RedisOptions => ({ connectionName: `execd-${name}-${this.nodeId}`, ...options });

    // Requests fail fast and are never resent after a reconnect: an answered 503 must not be applied later.
    const failFast: RedisOptions = { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 1 };
    this.cmd = this.scripted(new Redis(url, named('cmd', { ...failFast, commandTimeout: UNAVAILABLE_MS })));
    this.watch(this.cmd, 'cmd');
    this.sub = new Redis(url, named('sub', { maxRetriesPerRequest: null }));
    this.watch(this.sub, 'sub');
    const channels = [this.channel('events'), this.channel('reply', this.nodeId)];
    if (this.runsJobs) channels.push(this.channel('ctl', this.nodeId));
    this.sub.subscribe(...channels).catch(() => {}); // ioredis subscribes again on every reconnect
    this.sub.on('message', (channel: string, message: string) => this.onMessage(channel, message));

    if (config.role !== 'worker') {
      this.bullConn = new Redis(url, named('bull', failFast));
      this.watch(this.bullConn, 'bull');
      for (const q of config.queues) {
        const queue = new Queue(q.name, { connection: this.bullConn, prefix: `${this.prefix}:bull` });
        queue.on('error', (err) => this.redisError(err, 'queue'));
        this.bullQueues.set(q.name, queue);
      }
      this.tailConn = new Redis(url, named('tail', { maxRetriesPerRequest: null }));
      this.watch(this.tailConn, 'tail');
      this.tailer = new Tailer(this.tailConn, this.cmd, (err) => this.redisError(err, 'tail'));
    } else {
      this.bullConn = null;
      this.tailConn = null;
      this.tailer = null;
    }

    if (this.runsJobs) {
      this.work = this.scripted(new Redis(url, named('work', { maxRetriesPerRequest: null })));
      this.watch(this.work, 'work');
      for (const q of config.queues) {
        const connection = new Redis(url, named(`worker-${q.name}`, { maxRetriesPerRequest: null }));
        this.watch(connection, 'worker');
        this.workerConns.push(connection);
        const worker = new Worker(q.name, async (job) => this.process(job.id!), {
          connection,
          prefix: `${this.prefix}:bull`,
          concurrency: q.concurrency,
          // BullMQ may hand a job out again when a worker's lock lapsed (a fetch whose reply was lost, a worker
          // gone): START lets a job start once only, so a second delivery of a running, lost or finished job
          // does nothing, and a job that was never started does start.
          // Short locks, so that a job whose fetch reply was lost goes out again within seconds; a worker whose
          // loop stalls past its lock only causes a second delivery that START turns away.
          maxStalledCount: 1_000_000,
          stalledInterval: BULL_STALLED_MS,
          lockDuration: BULL_LOCK_MS,
          removeOnComplete: { count: 0 },
          removeOnFail: { count: 0 },
        });
        worker.on('error', (err) => this.workerError(err));
        this.workers.push(worker);
      }
      void this.beat();
      this.every(Math.max(100, Math.floor(config.redisStallMs / 5)), () => this.beat());
    } else {
      this.work = null;
    }
    this.every(Math.max(100, Math.floor(config.redisStallMs / 4)), () => this.reap());
  }

  // ---- the JobQueue interface ----------------------------------------------------------------

  async submit({ queue, spec, ownerId, grant, idempotencyKey }: SubmitRequest): Promise<Submitted> {
    if (this.draining) throw new ApiError('SHUTTING_DOWN', 'the server is shutting down and takes no new jobs');
    const bull = this.bullQueues.get(queue);
    if (!bull) throw unknownQueue(queue, [...this.bullQueues.keys()], 'body');
    const id = newJobId();
    const now = Date.now();
    const secret = spec.env !== undefined || typeof spec.stdin === 'string' ? JSON.stringify({ env: spec.env, stdin: spec.stdin }) : '';
    const redacted = redactSpec(spec);
    const idemKey = idempotencyKey === undefined ? '' : `${this.prefix}:idem:${ownerId}:${idempotencyKey}`;
    const digest = idempotencyKey === undefined ? '' : requestDigest(queue, spec);
    const r = (await this.call(() =>
      this.cmd.execdSubmit(this.prefix, id, queue, now, JSON.stringify(ownerId), JSON.stringify(redacted), secret, JSON.stringify(grant), digest, this.config.queueCapacity, idemKey, CONFIRM_MS),
    )) as [string, string?, number?];
    if (r[0] === 'dup') {
      // The earlier submit with this key may be a moment from its confirmation (two racing requests): wait a little.
      for (const until = Date.now() + UNAVAILABLE_MS; ; ) {
        const job = await this.get(r[1]!);
        if (job) return { job, created: false };
        if (Date.now() > until) break;
        await new Promise((done) => setTimeout(done, 20));
      }
      // the earlier submit with this key is still being confirmed (or failed and is being forgotten)
      throw new ApiError('QUEUE_FULL', 'a job with this Idempotency-Key is still being accepted; try again shortly', {}, { retryAfter: 1 });
    }
    if (r[0] === 'conflict') throw new ApiError('CONFLICT', `Idempotency-Key was already used for job ${r[1]} with another body`, { jobId: r[1] });
    if (r[0] === 'full') {
      throw new ApiError('QUEUE_FULL', `queue "${queue}" already holds ${this.config.queueCapacity} waiting jobs`, { queue }, { retryAfter: 1 });
    }
    // Accepted once BullMQ has the job AND the record says so (CONFIRM). A submit that fails in between is
    // answered 503 and never runs: its record is forgotten now, or by REAP once its confirmation time is over.
    try {
      await withTimeout(bull.add('job', { id }, { jobId: id, attempts: 1, removeOnComplete: true, removeOnFail: true }), UNAVAILABLE_MS);
      if ((await this.cmd.execdConfirm(this.prefix, id)) !== 1) throw new Error(`job ${id} was abandoned before its confirmation`);
    } catch (err) {
      void this.cmd.execdAbandon(this.prefix, id).catch(() => {});
      throw this.unavailable(err);
    }
    const record: JobRecord = {
      id, seq: Number(r[1]), queue, state: 'queued', createdAt: now, ownerId, grant: null, startedAt: null, finishedAt: null,
      spec: redacted, pid: null, result: null, error: null,
    };
    return { job: toJobView(record, Number(r[2]), { stdout: 0, stderr: 0 }), created: true };
  }

  async get(id: string): Promise<Job | undefined> {
    const f = (await this.call(() => this.cmd.execdView(this.prefix, id))) as (string | null | number)[];
    return viewOf(f.slice(0, lua.FIELDS.length) as Flat, f[lua.FIELDS.length] as number | null) ?? undefined;
  }

  async ownerOf(id: string): Promise<string | null | undefined> {
    const owner = await this.call(() => this.cmd.hget(this.jobKey(id), 'owner'));
    return owner === null ? undefined : (JSON.parse(owner) as string | null);
  }

  async list({ state, queue, owner, limit, cursor }: ListRequest): Promise<JobList> {
    if (queue !== undefined && !this.config.queues.some((q) => q.name === queue)) {
      throw unknownQueue(queue, this.config.queues.map((q) => q.name), 'querystring');
    }
    return this.call(async () => {
      const items: Job[] = [];
      let after = cursor === undefined ? 0 : Number(cursor);
      let scanned = 0;
      const page = Math.min(1000, Math.max(100, limit * 2));
      for (;;) {
        const ids = await this.cmd.zrangebyscore(this.key('jobs'), `(${after}`, '+inf', 'WITHSCORES', 'LIMIT', 0, page);
        if (ids.length === 0) return { items, nextCursor: null };
        const pipeline = this.cmd.pipeline();
        for (let i = 0; i < ids.length; i += 2) pipeline.hmget(this.jobKey(ids[i]!), ...lua.FIELDS);
        const rows = (await pipeline.exec())!.map(([err, f]) => (err ? null : (f as Flat)));
        const queued: { at: number; f: Flat }[] = [];
        for (let i = 0; i < rows.length; i++) {
          const f = rows[i]!;
          const seq = Number(ids[i * 2 + 1]);
          scanned++;
          if (f && str(f[3]) !== null && str(f[14]) === null && (state === undefined || f[3] === state) && (queue === undefined || f[2] === queue) && (owner === undefined || ownerOfFlat(f) === owner)) {
            if (items.length === limit) return this.withPositions(items, queued, String(after));
            if (f[3] === 'queued') queued.push({ at: items.length, f });
            items.push(viewOf(f, null)!);
          }
          after = seq;
        }
        if (ids.length < page * 2) return this.withPositions(items, queued, null);
        if (scanned >= LIST_SCAN_MAX) return this.withPositions(items, queued, String(after));
      }
    });
  }

  async cancel(id: string): Promise<Job> {
    const r = (await this.call(() => this.cmd.execdCancel(this.prefix, id, Date.now(), this.config.retainJobs))) as string[];
    if (r.length === 0) throw notFound(id);
    if (r[0] === 'canceled') {
      await this.bullQueues.get((await this.get(id))?.queue ?? '')?.remove(id).catch(() => {}); // tidy only: a worker skips it anyway
    } else if (r[0] === 'running') {
      const [, node, attempt] = r;
      await this.control(node!, { op: 'cancel', id, attempt: attempt! });
      const job = await this.waitForTerminal(id, this.config.killGraceMs + this.config.pipeDrainMs + 10_000);
      if (job) return job;
    }
    const job = await this.get(id);
    if (!job) throw notFound(id);
    return job;
  }

  async signal(id: string, signal: NodeJS.Signals): Promise<Job> {
    const [state, node, attempt] = await this.call(() => this.cmd.hmget(this.jobKey(id), 'state', 'node', 'attempt'));
    if (state === null) throw notFound(id);
    if (state !== 'running') throw new ApiError('CONFLICT', `job ${id} is ${state}; only a running job can be signaled`, { state });
    const ok = await this.rpc(node!, { op: 'signal', id, attempt: attempt!, signal }, SIGNAL_REPLY_MS);
    if (!ok) throw new ApiError('CONFLICT', `job ${id} has no live process to signal (it just exited, or never started)`, { state });
    return (await this.get(id)) ?? Promise.reject(notFound(id));
  }

  async remove(id: string): Promise<void> {
    const r = (await this.call(() => this.cmd.execdRemove(this.prefix, id))) as string[];
    if (r.length === 0) throw notFound(id);
    if (r[0] !== 'ok') throw new ApiError('CONFLICT', `job ${id} is ${r[0]}; cancel it first, only a finished job can be deleted`, { state: r[0] });
    this.dropMirror(id);
  }

  async waitForTerminal(id: string, timeoutMs: number, abort?: AbortSignal): Promise<Job | undefined> {
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    abort?.addEventListener('abort', onAbort, { once: true });
    try {
      // Listen first, then look: a job that ends in between still wakes this wait.
      const waiting = timeoutMs > 0 && !abort?.aborted ? this.waiters.wait(id, timeoutMs, stop.signal) : null;
      const job = await this.get(id);
      if (!job || isTerminal(job.state) || !waiting) return job;
      await waiting;
      return (await this.get(id)) ?? job;
    } finally {
      stop.abort();
      abort?.removeEventListener('abort', onAbort);
    }
  }

  async output(id: string): Promise<OutputMirror | undefined> {
    let mirror = this.mirrors.get(id);
    if (!mirror) {
      const state = await this.call(() => this.cmd.hget(this.jobKey(id), 'state'));
      if (state === null) return undefined;
      mirror = this.mirrors.get(id); // made by a concurrent reader meanwhile
      if (!mirror) {
        mirror = new OutputMirror(this.cmd, this.prefix, id, this.mirrorDir, this.config.outputMemoryBytes, (err, stream) =>
          this.deps.log.warn({ err, jobId: id, stream }, 'job output could not be kept on this node; the rest of the stream is dropped'),
        );
        this.mirrors.set(id, mirror);
      }
    }
    mirror.lastUsed = Date.now();
    try {
      await this.call(() => mirror.ready);
    } catch (err) {
      this.dropMirror(id);
      throw err;
    }
    if (!mirror.disposed && !(mirror.closed('stdout') && mirror.closed('stderr'))) this.tailer?.follow(mirror);
    return mirror;
  }

  async writeStdin(id: string, data: Buffer | null): Promise<boolean> {
    const [state, node, attempt] = await this.call(() => this.cmd.hmget(this.jobKey(id), 'state', 'node', 'attempt'));
    if (state !== 'running') return false;
    // The worker answers once the pipe has room again: a writer that awaits each call stays bounded across nodes.
    return this.rpc(node!, { op: 'stdin', id, attempt: attempt!, data: data === null ? null : data.toString('base64') }, 'until-answered');
  }

  async queues(): Promise<QueueInfo[]> {
    return this.call(async () => {
      const pipeline = this.cmd.pipeline();
      for (const q of this.config.queues) pipeline.zcard(this.key('wait', q.name)).scard(this.key('run', q.name));
      pipeline.hgetall(this.key('stats')).smembers(this.key('nodes'));
      const res = (await pipeline.exec())!.map(([err, v]) => {
        if (err) throw err;
        return v;
      });
      const stats = res[res.length - 2] as Record<string, string>;
      const nodes = res[res.length - 1] as string[];
      const beats = nodes.length > 0 ? await this.cmd.mget(...nodes.map((n) => this.key('node', n))) : [];
      // This node's own workers count from the start, before its first heartbeat lands.
      const concurrency = new Map<string, number>(this.runsJobs ? this.config.queues.map((q) => [q.name, q.concurrency]) : []);
      beats.forEach((beat, i) => {
        if (nodes[i] === this.nodeId) return;
        if (beat === null) {
          void this.cmd.srem(this.key('nodes'), nodes[i]!).catch(() => {});
          return;
        }
        try {
          for (const [name, n] of Object.entries((JSON.parse(beat) as { queues?: Record<string, number> }).queues ?? {})) {
            concurrency.set(name, (concurrency.get(name) ?? 0) + n);
          }
        } catch {
          // a heartbeat of another version: no concurrency from it
        }
      });
      return this.config.queues.map((q, i) => ({
        name: q.name,
        concurrency: concurrency.get(q.name) ?? 0,
        running: Number(res[i * 2 + 1]),
        queued: Number(res[i * 2]),
        capacity: this.config.queueCapacity,
        processed: Number(stats[`${q.name}:processed`] ?? 0),
        failed: Number(stats[`${q.name}:failed`] ?? 0),
      }));
    });
  }

  /**
   * This node takes no new jobs and its workers take no more; the jobs they
   * run go on. Queued jobs stay in Redis for the other workers (and for this
   * one after a restart): with a shared queue, one node's shutdown is not a
   * reason to cancel anyone's work.
   */
  drain(): Promise<void> {
    return (this.draining ??= Promise.all([
      // A worker still connecting connects first (briefly): BullMQ's blocking connection must not be closed mid-handshake.
      ...this.workers.map((w) =>
        withTimeout(w.waitUntilReady(), 1000)
          .catch(() => {})
          .then(() => w.close())
          .catch((err: Error) => this.workerError(err)),
      ),
      this.waitersGone(),
    ]).then(() => undefined));
  }

  /**
   * Resolves once no long-poll or cancel on this node waits for a job: on an API node the jobs run elsewhere,
   * so what a drain waits for is the requests in flight here (the shutdown bounds it by its grace).
   */
  private async waitersGone(): Promise<void> {
    while (this.waiters.size > 0 && !this.closing) await new Promise((r) => setTimeout(r, 50));
  }

  close(): Promise<void> {
    return (this.closing ??= this.shutdown());
  }

  // ---- worker side ----------------------------------------------------------------------------

  /** BullMQ's processor: run one job on this node, if it is still queued. Never throws. */
  private async process(id: string): Promise<void> {
    const work = this.work!;
    const run: LocalRun = { attempt: null, handle: null, started: new StartGate(), stop: null, fenced: false };
    this.local.set(id, run); // before START: a cancel that reaches this node from now on finds it
    let writer: RedisOutputWriter | null = null;
    try {
      const token = `${this.nodeId}:${newJobId()}`; // this delivery: START answers it the same if the command is resent
      let started: [string, string, string, string, string] | ['wait'] | null;
      for (const until = Date.now() + CONFIRM_MS + 2000; ; ) {
        started = (await work.execdStart(this.prefix, id, this.nodeId, this.host, this.instance, Date.now(), this.beatValue(), this.config.redisStallMs, token)) as typeof started;
        if (started?.[0] !== 'wait' || Date.now() > until) break;
        await new Promise((r) => setTimeout(r, 20)); // its submit has not confirmed yet (a few ms, as a rule)
      }
      if (!started || started[0] === 'wait') return; // canceled, lost, deleted or never accepted: it never runs
      const [attempt, specJson, secretJson, grantJson, ownerJson] = started as [string, string, string, string, string];
      run.attempt = attempt;
      const spec = { ...(JSON.parse(specJson) as CommandSpec), ...(secretJson ? (JSON.parse(secretJson) as Partial<CommandSpec>) : {}) };
      const grant = JSON.parse(grantJson) as Grant | null;
      const ownerId = JSON.parse(ownerJson) as string | null;
      const cap = grant?.maxOutputBytes ?? spec.maxOutputBytes ?? this.config.maxOutputBytes;
      writer = new RedisOutputWriter(work, this.prefix, id, cap, (err) => this.redisError(err, 'output'));
      let handle: RunHandle;
      let runSpec: RunSpec;
      try {
        runSpec = this.deps.prepareRun(spec, grant);
        handle = await startRunRetrying(runSpec, writer, this.deps.runContext, () => run.stop !== null); // out of resources: a few tries
      } catch (err) {
        if (startError(err).code === 'INTERNAL') this.deps.log.error({ err, jobId: id }, 'job could not be started');
        const error = run.stop === 'shutdown' ? SHUTDOWN_ERROR : startError(err);
        await this.finishRun(id, run, run.stop ? 'canceled' : 'failed', null, error, writer);
        return;
      }
      run.handle = handle;
      this.deps.onRunStart?.(handle, id, ownerId);
      if (run.stop) handle.terminate(run.stop);
      run.started.open(handle);
      await work.execdStarted(this.prefix, id, attempt, handle.pid);
      this.deps.log.debug({ jobId: id, pid: handle.pid, node: this.nodeId }, 'job started');
      const outcome = await handle.done;
      run.handle = null;
      const returncode = returncodeOf(outcome);
      const ran = { uid: runSpec.uid ?? SERVER_UID, gid: runSpec.gid ?? SERVER_GID };
      const result = toJobResult(outcome, returncode, writer, ran);
      if (run.fenced) {
        await this.finishRun(id, run, 'lost', result, { code: 'WORKER_LOST', message: 'the worker lost Redis and stopped the job rather than risk running it twice' }, writer);
      } else {
        const error = outcome.terminationReason === 'shutdown' ? SHUTDOWN_ERROR : null;
        await this.finishRun(id, run, finalState(outcome, returncode), result, error, writer);
      }
    } catch (err) {
      this.deps.log.error({ err, jobId: id }, 'job worker failed');
      if (run.attempt !== null) {
        await this.finishRun(id, run, 'failed', null, { code: 'INTERNAL', message: 'the worker failed; the error has been logged' }, writer).catch(() => {});
      }
    } finally {
      run.started.open(null); // never started: a signal still waiting is refused
      this.local.delete(id);
    }
  }

  private async finishRun(id: string, run: LocalRun, state: TerminalState, result: JobResult | null, error: JobError | null, writer: RedisOutputWriter | null): Promise<void> {
    await writer?.flush();
    const applied = await this.work!.execdFinish(
      this.prefix, id, run.attempt!, state, Date.now(), result ? JSON.stringify(result) : '', error ? JSON.stringify(error) : '',
      writer?.dropped('stdout') ?? 0, writer?.dropped('stderr') ?? 0, this.config.retainJobs,
    );
    this.deps.log.info(
      { jobId: id, state, returncode: result?.returncode, durationMs: result?.durationMs, error: error?.code, node: this.nodeId, ...(applied ? {} : { fenced: true }) },
      applied ? 'job finished' : 'job finished after another node declared it lost; its outcome is not recorded',
    );
  }

  /** The worker's heartbeat; and its own fence: without Redis for most of the stall interval, it kills what it runs. */
  private async beat(): Promise<void> {
    try {
      const pipeline = this.cmd.pipeline().set(this.key('node', this.nodeId), this.beatValue(), 'PX', this.config.redisStallMs).sadd(this.key('nodes'), this.nodeId);
      // A cancel whose message was lost (pub/sub is at most once) is still seen here.
      const ids = [...this.local.keys()];
      for (const id of ids) pipeline.hmget(this.jobKey(id), 'stop', 'attempt');
      const res = (await pipeline.exec())!;
      if (res[0]![0]) throw res[0]![0];
      this.lastBeat = Date.now();
      ids.forEach((id, i) => {
        const [stop, attempt] = (res[i + 2]![1] ?? []) as (string | null)[];
        const run = this.local.get(id);
        if (stop === 'cancel' && run && run.attempt === attempt) this.stopRun(run, 'cancel');
      });
    } catch {
      const silentMs = Date.now() - this.lastBeat;
      if (silentMs > this.config.redisStallMs * SELF_FENCE && this.local.size > 0) {
        for (const run of this.local.values()) {
          if (run.fenced || !run.handle) continue;
          run.fenced = true;
          run.handle.terminate('cancel');
        }
        this.deps.log.error({ silentMs, jobs: this.local.size }, 'redis unreachable for too long: running jobs killed, other nodes will declare them lost');
      }
    }
  }

  private beatValue(): string {
    return JSON.stringify({ host: this.host, instance: this.instance, pid: process.pid, queues: Object.fromEntries(this.config.queues.map((q) => [q.name, q.concurrency])) });
  }

  private stopRun(run: LocalRun, reason: 'cancel' | 'shutdown'): void {
    run.stop ??= reason;
    run.handle?.terminate(reason);
  }

  /** A message for this worker: cancel, signal or stdin of a job it runs, fenced by the attempt. */
  private async onControl(msg: Control): Promise<boolean> {
    if (msg.op === 'stdin') {
      const known = this.stdinWrites.get(msg.rid);
      if (known) return known; // a copy sent again (its answer was lost, or is still to come): the same outcome
    }
    const run = this.local.get(msg.id);
    if (!run || (run.attempt !== null && run.attempt !== msg.attempt)) return false;
    switch (msg.op) {
      case 'cancel':
        this.stopRun(run, 'cancel');
        return true;
      case 'signal': {
        // Running (START is done) but the process not there yet: the signal waits for it, then goes.
        const handle = run.handle ?? (await run.started.process());
        return handle?.signal(msg.signal) ?? false;
      }
      case 'stdin': {
        const write = this.writeStdinHere(run, msg.data === null ? null : Buffer.from(msg.data, 'base64'));
        this.stdinWrites.set(msg.rid, write);
        void write.finally(() => setTimeout(() => this.stdinWrites.delete(msg.rid), STDIN_REMEMBER_MS).unref());
        return write;
      }
    }
  }

  /** A stdin write to a job this worker runs: once its process exists, in turn with the job's other writes. */
  private async writeStdinHere(run: LocalRun, data: Buffer | null): Promise<boolean> {
    const handle = run.handle ?? (await run.started.process());
    return handle !== null && writeStdinInTurn(handle, data);
  }

  // ---- every node -----------------------------------------------------------------------------

  /** Declare lost the jobs of workers whose heartbeat is gone (and kill what they left on this host); forget expired jobs. */
  private async reap(): Promise<void> {
    let lost: string[];
    try {
      lost = (await this.cmd.execdReap(this.prefix, Date.now(), this.config.retainMs, this.config.retainJobs)) as string[];
    } catch {
      return; // Redis away: the next round tries again
    }
    const here = new Set<string>();
    for (let i = 0; i < lost.length; i += 4) {
      const [id, host, instance] = lost.slice(i, i + 3);
      this.deps.log.warn({ jobId: id, host, instance }, 'job lost: its worker stopped answering');
      if (host === this.host && instance && instance !== this.instance) here.add(instance);
    }
    if (here.size > 0) {
      const survivors = await killTagged(here, this.config.killGraceMs).catch(() => []);
      if (survivors.length > 0) this.deps.log.error({ survivors }, 'processes of a lost worker could not be killed');
    }
    const now = Date.now();
    for (const [id, mirror] of this.mirrors) {
      if (!mirror.inUse && now - mirror.lastUsed > MIRROR_IDLE_MS) this.dropMirror(id);
    }
  }

  private onMessage(channel: string, message: string): void {
    let msg: { t?: string; id?: string; f?: Flat; pos?: number | false; rid?: string; ok?: boolean; op?: string };
    try {
      msg = JSON.parse(message);
    } catch {
      return;
    }
    if (channel === this.channel('events')) {
      if (msg.t === 'removed') {
        this.dropMirror(msg.id!);
        this.waiters.notify(msg.id!);
        return;
      }
      const name = msg.t as keyof JobQueueEvents;
      if (msg.t === 'finished') this.waiters.notify(str(msg.f?.[0])!);
      if (this.events.listenerCount(name) === 0 || !msg.f) return;
      const job = viewOf(msg.f, msg.pos ?? null);
      if (job) this.events.emit(name, job, ownerOfFlat(msg.f));
    } else if (channel === this.channel('reply', this.nodeId)) {
      const resolve = this.replies.get(msg.rid!);
      this.replies.delete(msg.rid!);
      resolve?.(msg.ok === true);
    } else if (msg.op) {
      const control = msg as unknown as Control;
      void this.onControl(control).then(
        (ok) => {
          if (control.op !== 'cancel') void this.cmd.publish(this.channel('reply', control.from), JSON.stringify({ rid: control.rid, ok })).catch(() => {});
        },
        (err) => this.deps.log.error({ err }, 'control message failed'),
      );
    }
  }

  /** Send a control message to the node running a job (this one directly); false when no node listens. */
  private async control(node: string, msg: Control): Promise<boolean> {
    if (node === this.nodeId && this.runsJobs) return this.onControl(msg);
    const listeners = await this.call(() => this.cmd.publish(this.channel('ctl', node), JSON.stringify(msg)));
    return listeners > 0;
  }

  /**
   * A control message with an answer: false when the job's worker says no, does not listen, or does not answer
   * within `timeoutMs`. 'until-answered': no deadline, the message is sent again every STDIN_RESEND_MS until
   * the worker answers (it applies it once) or no longer listens.
   */
  private async rpc(node: string, msg: Request, timeoutMs: number | 'until-answered'): Promise<boolean> {
    const rid = `${this.nodeId}:${++this.rpcSeq}`;
    const full = { ...msg, rid, from: this.nodeId } as Control;
    if (node === this.nodeId && this.runsJobs) return this.onControl(full);
    let answer!: (ok: boolean) => void;
    const answered = new Promise<boolean>((resolve) => (answer = resolve));
    this.replies.set(rid, answer);
    let timer: NodeJS.Timeout | undefined;
    try {
      if (!(await this.control(node, full))) return false;
      if (timeoutMs === 'until-answered') {
        const again = () => this.control(node, full).then((listened) => listened || answer(false), () => {}); // Redis away: the next round tries again
        timer = setInterval(() => void again(), STDIN_RESEND_MS);
      } else {
        timer = setTimeout(() => answer(false), timeoutMs);
      }
      return await answered;
    } finally {
      clearInterval(timer);
      this.replies.delete(rid);
    }
  }

  private async shutdown(): Promise<void> {
    const drained = this.drain();
    for (const run of this.local.values()) this.stopRun(run, 'shutdown');
    await drained;
    for (const t of this.timers) clearInterval(t);
    this.tailer?.close();
    for (const id of [...this.mirrors.keys()]) this.dropMirror(id);
    this.waiters.notifyAll();
    for (const resolve of this.replies.values()) resolve(false);
    await Promise.allSettled([...this.bullQueues.values()].map((q) => q.close()));
    // Written states and output reach Redis before the connections go (QUIT waits for them); not forever.
    const conns = [this.work, this.cmd, this.sub, this.bullConn, this.tailConn, ...this.workerConns].filter((c): c is Redis => c !== null);
    // A connection still connecting finishes first (briefly): quitting it mid-handshake rejects ioredis's own
    // handshake commands (INFO, CLIENT SETINFO, SUBSCRIBE) with nobody to catch them.
    await Promise.allSettled(conns.map((c) => (c.status === 'ready' ? null : withTimeout(new Promise((r) => c.once('ready', r)), 1000))));
    await Promise.allSettled(conns.map((c) => withTimeout(c.quit(), 2000).catch(() => c.disconnect())));
    rmSync(this.mirrorDir, { recursive: true, force: true });
  }

  // ---- plumbing -------------------------------------------------------------------------------

  private key(...parts: string[]): string {
    return [this.prefix, ...parts].join(':');
  }

  private jobKey(id: string): string {
    return `${this.prefix}:job:${id}`;
  }

  private channel(name: string, node?: string): string {
    return node === undefined ? this.key(name) : this.key(name, node);
  }

  private scripted(conn: Redis): Scripted {
    for (const [name, script] of Object.entries(SCRIPTS)) conn.defineCommand(name, { numberOfKeys: 0, lua: script });
    return conn as Scripted;
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

  private withPositions(items: Job[], queued: { at: number; f: Flat }[], nextCursor: string | null): Promise<JobList> | JobList {
    if (queued.length === 0) return { items, nextCursor };
    const pipeline = this.cmd.pipeline();
    for (const { f } of queued) pipeline.zrank(this.key('wait', str(f[2])!), str(f[0])!);
    return pipeline.exec().then((res) => {
      queued.forEach(({ at }, i) => {
        const rank = res?.[i]?.[1];
        if (typeof rank === 'number' && items[at]!.state === 'queued') items[at] = { ...items[at]!, position: rank };
      });
      return { items, nextCursor };
    });
  }

  private dropMirror(id: string): void {
    const mirror = this.mirrors.get(id);
    if (!mirror) return;
    this.mirrors.delete(id);
    this.tailer?.unfollow(mirror);
    mirror.dispose();
  }

  /** Run a request against Redis: waits up to a second for a connection, and turns a Redis failure into 503. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.cmd.status !== 'ready') {
      if (this.cmd.status === 'end' || this.closing) throw this.unavailable(new Error('the connection is closed'));
      const ready = await withTimeout(new Promise<boolean>((resolve) => this.cmd.once('ready', () => resolve(true))), UNAVAILABLE_MS).catch(() => false);
      if (!ready) throw this.unavailable(new Error('not connected'));
    }
    try {
      return await fn();
    } catch (err) {
      if (isApiError(err)) throw err;
      throw this.unavailable(err);
    }
  }

  private unavailable(err: unknown): ApiError {
    // Logged at most every 10 s, and without the outage flag: a command that failed on a live connection
    // (a timeout) must not keep the next real outage from being logged.
    this.warnEvery('request', { err: { message: (err as Error)?.message }, node: this.nodeId }, 'a request to redis failed: answered 503');
    return new ApiError('QUEUE_FULL', 'the queue backend (redis) is unreachable; try again shortly', {}, { retryAfter: 1 });
  }

  /** BullMQ worker errors (a lapsed lock, a connection retry): logged at most every 10 s. */
  private workerError(err: Error): void {
    this.warnEvery('worker', { err: { message: err?.message }, node: this.nodeId }, 'job worker (BullMQ) error');
  }

  private warnEvery(kind: string, fields: object, message: string): void {
    const now = Date.now();
    if (now - (this.lastWarned.get(kind) ?? 0) < 10_000) return;
    this.lastWarned.set(kind, now);
    this.deps.log.warn(fields, message);
  }

  /** Connection trouble is logged once per outage, not once per retry. */
  private redisError(err: Error, where: string): void {
    if (this.down) return;
    this.down = true;
    this.deps.log.warn({ err: { message: err?.message }, where, node: this.nodeId }, 'redis unreachable');
  }

  private watch(conn: Redis, name: string): void {
    conn.on('error', (err) => this.redisError(err, name));
    conn.on('ready', () => {
      if (!this.down) return;
      this.down = false;
      this.deps.log.info({ node: this.nodeId }, 'redis reachable again');
    });
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function notFound(id: string): ApiError {
  return new ApiError('NOT_FOUND', `no job ${JSON.stringify(id.slice(0, 64))}`);
}

function unknownQueue(queue: string, known: string[], where: 'body' | 'querystring'): ApiError {
  const message = `no queue "${queue}" on this server (queues: ${known.join(', ')})`;
  return new ApiError('VALIDATION_FAILED', message, { errors: [{ in: where, path: '/queue', message }] });
}
