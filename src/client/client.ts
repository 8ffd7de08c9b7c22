import { ExecdError } from './errors.js';
import { jobEvents } from './events.js';
import { exitOf, followJob, type FollowOptions } from './follow.js';
import { json, request, type Transport } from './http.js';
import { streamJob, type StreamOptions } from './stream.js';
import {
  isTerminal, labelParams,
  type CallRequest, type CheckOutputRequest, type ClientEvent, type CommandSpec, type CompletedProcess, type Info, type Job, type JobList,
  type JobRequest, type JobState, type JobStreamEvent, type LabelQuery, type PolicyDecision, type Process, type ProcessList, type QueueInfo,
  type RunRequest, type RunResult, type StreamName, type SubprocessRunRequest,
} from './types.js';

export interface ClientOptions {
  /** Where execd listens, e.g. http://127.0.0.1:8080 (a trailing slash is fine). */
  url: string;
  /** A bearer token (EXECD_TOKEN, or one of EXECD_TOKENS_FILE). */
  token?: string;
}

const MAX_WAIT_MS = 60_000; // the server's longest long-poll (GET /v1/jobs/{id}?waitMs)

/**
 * A typed client for execd's HTTP and WebSocket API (openapi.yaml). Global fetch and WebSocket only: it
 * runs in Node 22+ and in browsers alike. Every refusal is an ExecdError with the problem's status, code
 * and detail; a server that cannot be reached is an ExecdError with status 0 and code UNREACHABLE.
 */
export class ExecdClient {
  private readonly t: Transport;

  constructor(opts: ClientOptions) {
    this.t = { url: opts.url.replace(/\/+$/, ''), token: opts.token };
  }

  get url(): string {
    return this.t.url;
  }

  /** GET /v1/info: the server process (os.getpid(), os.getcwd()…). */
  info(): Promise<Info> {
    return json(this.t, '/v1/info');
  }

  /** GET /v1/processes: the host's processes. */
  processes(query: { user?: number; execd?: boolean; pgid?: number } = {}): Promise<ProcessList> {
    return json(this.t, '/v1/processes', { query });
  }

  /** GET /v1/processes/{pid}. */
  process(pid: number): Promise<Process> {
    return json(this.t, `/v1/processes/${pid}`);
  }

  /** POST /v1/run: a synchronous run. A non-zero status is a result, not an error (unless `check`). */
  run(spec: RunRequest, opts: { signal?: AbortSignal } = {}): Promise<RunResult> {
    return json(this.t, '/v1/run', { body: spec, signal: opts.signal });
  }

  /** GET /v1/queues. */
  queues(): Promise<QueueInfo[]> {
    return json(this.t, '/v1/queues');
  }

  /** GET /v1/events: every job's lifecycle, reconnecting (see jobEvents); `label` keeps only jobs with all those labels. */
  events(opts: { signal?: AbortSignal; label?: LabelQuery } = {}): AsyncGenerator<ClientEvent, void, undefined> {
    return jobEvents(this.t, { signal: opts.signal, label: labelParams(opts.label) });
  }

  /** GET /healthz: true when the server answers at all (no token needed). */
  async healthy(): Promise<boolean> {
    return request({ url: this.t.url, token: undefined }, '/healthz').then(() => true, () => false);
  }

  readonly policy = {
    /** POST /v1/policy/explain: would this command run, under which rule, and why (runs nothing). */
    explain: (spec: CommandSpec): Promise<PolicyDecision> => json(this.t, '/v1/policy/explain', { body: spec }),
  };

  /** Python's subprocess functions, with Python's arguments and results (/v1/subprocess/*). */
  readonly subprocess = {
    getoutput: (cmd: string): Promise<string> => json<{ output: string }>(this.t, '/v1/subprocess/getoutput', { body: { cmd } }).then((r) => r.output),
    getstatusoutput: (cmd: string): Promise<[number, string]> =>
      json<{ status: number; output: string }>(this.t, '/v1/subprocess/getstatusoutput', { body: { cmd } }).then((r) => [r.status, r.output]),
    check_output: (req: CheckOutputRequest): Promise<string> =>
      json<{ output: string }>(this.t, '/v1/subprocess/check_output', { body: req }).then((r) => r.output),
    call: (req: CallRequest): Promise<number> => json<{ returncode: number }>(this.t, '/v1/subprocess/call', { body: req }).then((r) => r.returncode),
    run: (req: SubprocessRunRequest): Promise<CompletedProcess> => json(this.t, '/v1/subprocess/run', { body: req }),
  };

  readonly jobs = {
    /** POST /v1/jobs: accepted at once. The same idempotencyKey with the same body answers the same job. */
    submit: (spec: JobRequest, opts: { idempotencyKey?: string } = {}): Promise<Job> =>
      json(this.t, '/v1/jobs', { body: spec, headers: opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {} }),

    /** GET /v1/jobs/{id}; with waitMs, held until the job is terminal or that long (at most 60 s). */
    get: (id: string, opts: { waitMs?: number; signal?: AbortSignal } = {}): Promise<Job> =>
      json(this.t, `/v1/jobs/${encodeURIComponent(id)}`, { query: { waitMs: opts.waitMs }, signal: opts.signal }),

    /**
     * GET /v1/jobs: one page; pass nextCursor as cursor for the next. `label` ({team: 'web'} or 'team=web' strings): only jobs
     * with every one of those labels.
     */
    list: (query: { state?: JobState; queue?: string; limit?: number; cursor?: string; label?: LabelQuery } = {}): Promise<JobList> =>
      json(this.t, '/v1/jobs', { query: { ...query, label: labelParams(query.label) } }),

    /** Long-poll until the job is terminal; ExecdError TIMEOUT (status 0) when timeoutMs passes first. */
    wait: async (id: string, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<Job> => {
      const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
      for (;;) {
        const left = deadline - Date.now();
        const job = await this.jobs.get(id, { waitMs: Math.max(0, Math.min(MAX_WAIT_MS, left)), signal: opts.signal });
        if (isTerminal(job.state)) return job;
        if (Date.now() >= deadline) throw new ExecdError(0, 'TIMEOUT', `job ${id} is still ${job.state} after ${opts.timeoutMs} ms`);
      }
    },

    /** POST /v1/jobs/{id}/cancel: scheduled or queued → canceled at once (no more retries); running → SIGTERM, SIGKILL after the grace. */
    cancel: (id: string): Promise<Job> => json(this.t, `/v1/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' }),

    /** POST /v1/jobs/{id}/signal: signal the job's process group. */
    signal: async (id: string, signal: string): Promise<void> => {
      await request(this.t, `/v1/jobs/${encodeURIComponent(id)}/signal`, { body: { signal } });
    },

    /** DELETE /v1/jobs/{id}: a terminal job's record and output are gone (409 while it runs). */
    remove: async (id: string): Promise<void> => {
      await request(this.t, `/v1/jobs/${encodeURIComponent(id)}`, { method: 'DELETE' });
    },

    /** GET /v1/jobs/{id}/output: the bytes of one stream kept now, from `offset`; `end` is the offset after them. */
    output: async (id: string, opts: { stream?: StreamName; offset?: number } = {}) => {
      const res = await request(this.t, `/v1/jobs/${encodeURIComponent(id)}/output`, { query: { stream: opts.stream, offset: opts.offset } });
      const data = new Uint8Array(await res.arrayBuffer());
      const offset = Number(res.headers.get('x-output-offset') ?? opts.offset ?? 0);
      return { data, offset, end: Number(res.headers.get('x-output-end') ?? offset + data.length), state: res.headers.get('x-job-state') as JobState | null };
    },

    /** One stream's bytes over HTTP follow, then `exit`; resumes by offset after a dropped connection. */
    follow: (id: string, opts: FollowOptions = {}): AsyncGenerator<JobStreamEvent, void, undefined> => followJob(this.t, id, opts),

    /** Both streams over the WebSocket (binary frames), state changes, then `exit`; resumes by offsets after a dropped connection. */
    stream: (id: string, opts: StreamOptions = {}): AsyncGenerator<JobStreamEvent, void, undefined> => streamJob(this.t, id, opts),
  };
}

export { exitOf };
