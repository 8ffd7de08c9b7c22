import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { JobQueue } from '../queue/index.js';
import type { Job } from '../schemas/jobs.js';
import type { RunTracker } from './tracker.js';

export interface MetricsSources {
  jobs: JobQueue;
  tracker: RunTracker;
  /** Open WebSocket viewers of this server, by endpoint. */
  viewers: () => { job: number; events: number };
  /** The viewers' process-wide counters (stream/metrics.ts), read at scrape time. */
  viewerCounters: Readonly<ViewerCounters>;
  draining: () => boolean;
}

/** What the WebSocket viewers count, process-wide; only ever growing. */
export interface ViewerCounters {
  viewersOpenedTotal: number;
  gapsTotal: number;
  gapBytesTotal: number;
  eventsDroppedTotal: number;
  deadViewersTotal: number;
}

export type RunKind = 'sync' | 'job';

let processRegistry: Registry | null = null;

/**
 * CPU, memory, handles, GC and event-loop lag (prom-client's default metrics)
 * describe the process, not one app: one registry for all the apps of a
 * process, created on first use (tests build many apps in one process).
 */
function processMetrics(): Registry {
  if (!processRegistry) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry, eventLoopMonitoringPrecision: 10 });
  }
  return processRegistry;
}

const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];
const ERRNO = /^E[A-Z0-9]{1,15}$/;

/** A counter that shows a running total kept elsewhere (the WebSocket module's process-wide counters). */
function mirroredCounter(registry: Registry, name: string, help: string, read: () => number): Counter {
  return new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/**
 * The metrics of one execd app, in its own registry (GET /metrics): jobs by
 * queue and state, queue depth and workers, run durations, spawn failures,
 * output bytes, WebSocket viewers and gaps, shedding and recovery; plus the
 * process metrics. Gauges are read at scrape time; counters move with events.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly runDuration: Histogram<'kind'>;
  private readonly spawnFailures: Counter<'kind' | 'errno'>;
  private readonly jobsFinished: Counter<'queue' | 'state'>;
  private readonly outputBytes: Counter<'queue' | 'stream'>;
  private readonly outputTruncated: Counter<'queue' | 'stream' | 'reason'>;
  private readonly shedCount: Counter;
  private readonly recoveredCount: Counter;
  private readonly notifyDeliveries: Counter<'outcome'>;
  private readonly onFinished = (job: Job) => this.jobFinished(job);

  constructor(private readonly sources: MetricsSources) {
    const registers = [this.registry];
    const { jobs, tracker } = sources;
    // One queues() call per scrape, shared by the queue gauges (prom-client collects them concurrently).
    let snapshot: ReturnType<JobQueue['queues']> | null = null;
    const queues = () => (snapshot ??= jobs.queues().finally(() => setImmediate(() => (snapshot = null))));
    type QueueInfo = Awaited<ReturnType<JobQueue['queues']>>[number];
    const byQueue = (name: string, help: string, set: (g: Gauge<'queue'>, q: QueueInfo) => void) =>
      new Gauge<'queue'>({
        name,
        help,
        labelNames: ['queue'],
        registers,
        async collect() {
          const all = await queues();
          this.reset();
          for (const q of all) set(this, q);
        },
      });
    new Gauge<'queue' | 'state'>({
      name: 'execd_jobs',
      help: 'Jobs now scheduled (a delayed start, a retry in its backoff), queued or running, by queue and state',
      labelNames: ['queue', 'state'],
      registers,
      async collect() {
        const all = await queues();
        this.reset();
        for (const q of all) {
          this.set({ queue: q.name, state: 'scheduled' }, q.scheduled);
          this.set({ queue: q.name, state: 'queued' }, q.queued);
          this.set({ queue: q.name, state: 'running' }, q.running);
        }
      },
    });
    byQueue('execd_queue_depth', 'Jobs waiting in the queue', (g, q) => g.set({ queue: q.name }, q.queued));
    byQueue('execd_queue_capacity', 'Most jobs the queue holds waiting (EXECD_QUEUE_CAPACITY)', (g, q) => g.set({ queue: q.name }, q.capacity));
    byQueue('execd_workers', 'Workers of the queue (EXECD_QUEUES)', (g, q) => g.set({ queue: q.name }, q.concurrency));
    byQueue('execd_workers_running', 'Workers running a job now', (g, q) => g.set({ queue: q.name }, q.running));
    this.jobsFinished = new Counter({
      name: 'execd_jobs_finished_total',
      help: 'Jobs that reached a terminal state, by queue and state',
      labelNames: ['queue', 'state'],
      registers,
    });
    this.runDuration = new Histogram({
      name: 'execd_run_duration_seconds',
      help: 'Wall time of finished processes, sync runs and jobs (kind)',
      labelNames: ['kind'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.spawnFailures = new Counter({
      name: 'execd_spawn_failures_total',
      help: 'Processes that could not be started (SPAWN_FAILED), by kind and errno',
      labelNames: ['kind', 'errno'],
      registers,
    });
    this.outputBytes = new Counter({
      name: 'execd_job_output_bytes_total',
      help: 'Output bytes written by finished jobs, by queue and stream',
      labelNames: ['queue', 'stream'],
      registers,
    });
    this.outputTruncated = new Counter({
      name: 'execd_job_output_truncated_total',
      help: 'Job streams that lost output, by queue, stream and reason (max_output: the cap; disk_full, write_failed: EXECD_DATA_DIR refused the bytes)',
      labelNames: ['queue', 'stream', 'reason'],
      registers,
    });
    new Gauge<'kind'>({
      name: 'execd_process_groups',
      help: 'Process groups execd runs now, by kind (sync run or job)',
      labelNames: ['kind'],
      registers,
      collect() {
        const runs = tracker.list();
        const jobsNow = runs.filter((r) => r.kind === 'job').length;
        this.set({ kind: 'job' }, jobsNow);
        this.set({ kind: 'sync' }, runs.length - jobsNow);
      },
    });
    new Gauge<'endpoint'>({
      name: 'execd_ws_viewers',
      help: 'Open WebSocket viewers, by endpoint (job output or events)',
      labelNames: ['endpoint'],
      registers,
      collect() {
        const v = sources.viewers();
        this.set({ endpoint: 'job' }, v.job);
        this.set({ endpoint: 'events' }, v.events);
      },
    });
    const streamMetrics = sources.viewerCounters;
    mirroredCounter(this.registry, 'execd_ws_viewers_opened_total', 'WebSocket viewers opened (process-wide)', () => streamMetrics.viewersOpenedTotal);
    mirroredCounter(this.registry, 'execd_ws_gaps_total', 'Gap frames sent to WebSocket viewers: bytes not held (past maxOutputBytes, a full disk, removed) or skipped with lag=skip (process-wide)', () => streamMetrics.gapsTotal);
    mirroredCounter(this.registry, 'execd_ws_gap_bytes_total', 'Output bytes those gaps named (process-wide)', () => streamMetrics.gapBytesTotal);
    mirroredCounter(this.registry, 'execd_ws_events_dropped_total', 'Events not sent to slow /v1/events viewers (process-wide)', () => streamMetrics.eventsDroppedTotal);
    mirroredCounter(this.registry, 'execd_ws_dead_viewers_total', 'Viewers cut by the heartbeat (process-wide)', () => streamMetrics.deadViewersTotal);
    this.shedCount = new Counter({ name: 'execd_requests_shed_total', help: 'Requests answered 503 because the event loop lagged (load shedding)', registers });
    this.recoveredCount = new Counter({
      name: 'execd_recovered_processes_total',
      help: 'Processes a crashed earlier instance left running, killed at start',
      registers,
    });
    this.notifyDeliveries = new Counter({
      name: 'execd_notify_deliveries_total',
      help: 'Completion callbacks (docs/notify.md) by outcome: delivered, failed (given up), dropped (too many pending); retried counts tries to be repeated',
      labelNames: ['outcome'],
      registers,
    });
    new Gauge({
      name: 'execd_draining',
      help: '1 while the server shuts down (draining), else 0',
      registers,
      collect() {
        this.set(sources.draining() ? 1 : 0);
      },
    });
    tracker.onDone = (run, outcome) => this.runDuration.observe({ kind: run.kind === 'job' ? 'job' : 'sync' }, outcome.durationMs / 1000);
    jobs.events.on('finished', this.onFinished);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text: this app's metrics, then the process's. */
  async text(): Promise<string> {
    const [own, proc] = await Promise.all([this.registry.metrics(), processMetrics().metrics()]);
    return `${own}\n${proc}`;
  }

  /** A process that could not be started (sync runs; jobs are counted from their `finished` event). */
  spawnFailed(kind: RunKind, errno: unknown): void {
    this.spawnFailures.inc({ kind, errno: typeof errno === 'string' && ERRNO.test(errno) ? errno : 'other' });
  }

  shed(): void {
    this.shedCount.inc();
  }

  recovered(processes: number): void {
    this.recoveredCount.inc(processes);
  }

  /** A completion callback was delivered, failed, dropped, or a try of it will be repeated (src/notify). */
  notifyDelivery(outcome: 'delivered' | 'retried' | 'failed' | 'dropped'): void {
    this.notifyDeliveries.inc({ outcome });
  }

  close(): void {
    this.sources.jobs.events.off('finished', this.onFinished);
    if (this.sources.tracker.onDone) this.sources.tracker.onDone = null;
  }

  private jobFinished(job: Job): void {
    this.jobsFinished.inc({ queue: job.queue, state: job.state });
    if (job.error?.code === 'SPAWN_FAILED') this.spawnFailed('job', job.error.errno);
    if (job.outputBytes.stdout > 0) this.outputBytes.inc({ queue: job.queue, stream: 'stdout' }, job.outputBytes.stdout);
    if (job.outputBytes.stderr > 0) this.outputBytes.inc({ queue: job.queue, stream: 'stderr' }, job.outputBytes.stderr);
    for (const stream of ['stdout', 'stderr'] as const) {
      const reason = job.result?.truncatedReason[stream];
      if (reason) this.outputTruncated.inc({ queue: job.queue, stream, reason });
    }
  }
}
