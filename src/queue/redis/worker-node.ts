import { hostname } from 'node:os';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../../config.js';
import type { CommandSpec } from '../../schemas/run.js';
import type { Grant } from '../../spec/grant.js';
import type { Claim, QueueDeps } from '../backend.js';
import { newJobId } from '../id.js';
import type { JobError, JobResult, TerminalState } from '../job.js';
import type { LocalRun, LocalRuns } from '../local-runs.js';
import { retryDelay } from '../retry.js';
import { Scripts } from './commands.js';
import { UNAVAILABLE_MS, withTimeout, type Connections } from './connections.js';
import { RedisOutputWriter } from './output.js';

/** A worker that has not reached Redis for this share of EXECD_REDIS_STALL_MS kills its running jobs. */
const SELF_FENCE = 0.6;
/** BullMQ's job lock (renewed every half) and how often workers look for jobs whose lock lapsed. */
const BULL_LOCK_MS = 4000;
const BULL_STALLED_MS = 2000;

export interface RedisClaim extends Claim {
  attempt: string;
  output: RedisOutputWriter;
}

type WorkerConfig = Pick<Config, 'queues' | 'redisStallMs' | 'maxOutputBytes' | 'retainJobs'>;

/**
 * The worker side of a node (role `worker` or `all`): BullMQ delivers jobs to
 * the one worker loop, START claims them, STARTED and FINISH record them; the
 * heartbeat keeps them from being declared lost, and fences them when Redis
 * stays away.
 */
export class WorkerNode {
  readonly host = hostname();
  private readonly work: Redis;
  private readonly scripts: Scripts;
  private readonly workers: Worker[] = [];
  /** BullMQ queues this node hands retries to (made on the first). */
  private readonly queues = new Map<string, Queue>();
  private lastBeat = Date.now();

  constructor(
    private readonly conns: Connections,
    private readonly prefix: string,
    private readonly nodeId: string,
    /** EXECD_INSTANCE of this node's children (ops/recovery.ts kills a dead worker's leftovers by it). */
    readonly instance: string,
    private readonly config: WorkerConfig,
    private readonly deps: QueueDeps,
    private readonly runs: LocalRuns,
    /** The shared Redis test of a submit's confirmation time (ms). */
    private readonly confirmMs: number,
    run: (id: string) => Promise<void>,
  ) {
    // Worker writes (output, states) wait through an outage.
    this.work = conns.open('work', conns.patient);
    this.scripts = new Scripts(this.work, prefix);
    for (const q of config.queues) {
      const connection = conns.open(`worker-${q.name}`, conns.patient);
      // `data.id`: a retry's delivery is BullMQ job `<id>.<attempt>`
      const worker = new Worker(q.name, async (job) => run((job.data as { id?: string } | undefined)?.id ?? job.id!), {
        connection,
        prefix: `${prefix}:bull`,
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
  }

  /** START, tried again while the job's submit is a moment from its confirmation; null: it never runs here. */
  async claim(id: string, run: LocalRun): Promise<RedisClaim | null> {
    const token = `${this.nodeId}:${newJobId()}`; // this delivery: START answers it the same if the command is resent
    const { nodeId: node, host, instance } = this;
    const args = { node, host, instance, heartbeat: this.beatValue(), stallMs: this.config.redisStallMs, token };
    for (const until = Date.now() + this.confirmMs + 2000; ; ) {
      const started = await this.scripts.start(id, { ...args, now: Date.now() });
      if (started.kind === 'gone') return null; // canceled, lost, deleted or never accepted
      if (started.kind === 'taken') {
        run.attempt = started.attempt;
        const secret = started.secret ? (JSON.parse(started.secret) as Partial<CommandSpec>) : {};
        const spec = { ...(JSON.parse(started.spec) as CommandSpec), ...secret };
        const grant = JSON.parse(started.grant) as Grant | null;
        const ownerId = JSON.parse(started.owner) as string | null;
        const cap = grant?.maxOutputBytes ?? spec.maxOutputBytes ?? this.config.maxOutputBytes;
        const output = new RedisOutputWriter(this.work, this.prefix, id, cap, (err) => this.conns.redisError(err, 'output'), {
          attempt: Number(started.attempt), base: started.base,
        });
        return { id, queue: started.queue, spec, grant, ownerId, attempt: started.attempt, output };
      }
      if (Date.now() > until) return null;
      await new Promise((r) => setTimeout(r, 20)); // its submit has not confirmed yet (a few ms, as a rule)
    }
  }

  async markStarted(claim: RedisClaim, pid: number): Promise<void> {
    await this.scripts.started(claim.id, claim.attempt, pid);
  }

  async finish(claim: RedisClaim, state: TerminalState, result: JobResult | null, error: JobError | null): Promise<void> {
    const { id, attempt, output } = claim;
    await output.flush();
    const dropped = { stdout: output.dropped('stdout'), stderr: output.dropped('stderr') };
    const { retainJobs } = this.config;
    // A retry goes to BullMQ first, with its backoff as delay, then FINISH schedules the job: a node that dies in
    // between leaves at most a delivery that START turns away. No add (Redis away): no retry, the job ends.
    const now = Date.now(); // the attempt's end: its backoff counts from here
    let retryDelayMs = retryDelay(claim.spec, Number(attempt), state, error);
    if (retryDelayMs !== null && claim.queue) {
      const next = Number(attempt) + 1;
      const delay = Math.max(0, now + retryDelayMs - Date.now());
      const added = await withTimeout(
        this.bull(claim.queue).add('job', { id }, { jobId: `${id}.${next}`, attempts: 1, delay, removeOnComplete: true, removeOnFail: true }),
        UNAVAILABLE_MS,
      ).catch((err: unknown) => this.deps.log.warn({ err, jobId: id }, 'a retry could not be queued; the job ends with this attempt'));
      if (added === undefined) retryDelayMs = null;
    }
    const applied = await this.scripts.finish(id, { attempt, state, now, result, error, dropped, retainJobs, retryDelayMs });
    const { nodeId: node } = this;
    const fields = { jobId: id, state, returncode: result?.returncode, durationMs: result?.durationMs, error: error?.code, node };
    if (applied === 'retried') {
      this.deps.log.info({ ...fields, attempt: Number(attempt), retryInMs: retryDelayMs }, 'job attempt ended; retried');
    }
    else if (applied === 'ended') this.deps.log.info(fields, 'job finished');
    else this.deps.log.info({ ...fields, fenced: true }, 'job finished after another node declared it lost; its outcome is not recorded');
  }

  /** The worker's heartbeat; and its own fence: without Redis for most of the stall interval, it kills what it runs. */
  async beat(): Promise<void> {
    try {
      const cmd = this.conns.cmd;
      const pipeline = cmd.pipeline().set(`${this.prefix}:node:${this.nodeId}`, this.beatValue(), 'PX', this.config.redisStallMs).sadd(`${this.prefix}:nodes`, this.nodeId);
      // A cancel whose message was lost (pub/sub is at most once) is still seen here.
      const ids = [...this.runs.values()].map((r) => r.id);
      for (const id of ids) pipeline.hmget(`${this.prefix}:job:${id}`, 'stop', 'attempt');
      const res = (await pipeline.exec())!;
      if (res[0]![0]) throw res[0]![0];
      this.lastBeat = Date.now();
      ids.forEach((id, i) => {
        const [stop, attempt] = (res[i + 2]![1] ?? []) as (string | null)[];
        const run = this.runs.get(id);
        if (stop === 'cancel' && run && run.attempt === attempt) run.stop('cancel');
      });
    } catch {
      const silentMs = Date.now() - this.lastBeat;
      if (silentMs > this.config.redisStallMs * SELF_FENCE && this.runs.size > 0) {
        for (const run of this.runs.values()) {
          if (run.fenced || !run.handle) continue;
          run.fenced = true;
          run.handle.terminate('cancel');
        }
        this.deps.log.error({ silentMs, jobs: this.runs.size }, 'redis unreachable for too long: running jobs killed, other nodes will declare them lost');
      }
    }
  }

  private bull(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.conns.open(`retry-${name}`, this.conns.patient), prefix: `${this.prefix}:bull` });
      queue.on('error', (err) => this.conns.redisError(err, 'queue'));
      this.queues.set(name, queue);
    }
    return queue;
  }

  /** Take no more jobs; the running ones go on. */
  drain(): Promise<void> {
    // A worker still connecting connects first (briefly): BullMQ's blocking connection must not be closed mid-handshake.
    return Promise.all(
      this.workers.map((w) =>
        withTimeout(w.waitUntilReady(), 1000)
          .catch(() => {})
          .then(() => w.close())
          .catch((err: Error) => this.workerError(err)),
      ),
    ).then(() => undefined);
  }

  /** The retry queues go (after the runs ended: a run that ends during a drain may still be retried elsewhere). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.queues.values()].map((q) => q.close()));
  }

  private beatValue(): string {
    const queues = Object.fromEntries(this.config.queues.map((q) => [q.name, q.concurrency]));
    return JSON.stringify({ host: this.host, instance: this.instance, pid: process.pid, queues });
  }

  /** BullMQ worker errors (a lapsed lock, a connection retry): logged at most every 10 s. */
  private workerError(err: Error): void {
    this.conns.warnEvery('worker', { err: { message: err?.message }, node: this.nodeId }, 'job worker (BullMQ) error');
  }
}
