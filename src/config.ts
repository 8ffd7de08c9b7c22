import { randomBytes } from 'node:crypto';
import { availableParallelism, hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';
import { z } from 'zod';
import { MAX_TIMEOUT_MS } from './schemas/run.js';

/**
 * All settings, from one schema. `loadConfig(process.env)` is called by main.ts
 * only; tests build a Config with `testConfig()` or `parseConfig()`.
 */

const intString = (name: string, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a whole number`)
    .transform(Number)
    .pipe(z.number().int().min(min, `${name} must be at least ${min}`).max(max, `${name} must be at most ${max}`));

const QUEUE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** A job that gives no timeoutMs is stopped after an hour, so that a forgotten one (a `cat` waiting on streamed stdin) frees its worker. */
export const DEFAULT_JOB_TIMEOUT_MS = 3_600_000;

export interface QueueSetting {
  name: string;
  concurrency: number;
}

function parseQueues(value: string, ctx: z.RefinementCtx): QueueSetting[] {
  const out: QueueSetting[] = [];
  for (const part of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([^:]+):(\d+)$/.exec(part);
    if (!m || !QUEUE_NAME.test(m[1]!) || Number(m[2]) < 1 || Number(m[2]) > 1024) {
      ctx.addIssue({ code: 'custom', message: `EXECD_QUEUES entry "${part}" must be name:workers (workers 1..1024)` });
      return z.NEVER;
    }
    if (out.some((q) => q.name === m[1])) {
      ctx.addIssue({ code: 'custom', message: `EXECD_QUEUES names queue "${m[1]}" twice` });
      return z.NEVER;
    }
    out.push({ name: m[1]!, concurrency: Number(m[2]) });
  }
  if (out.length === 0) {
    ctx.addIssue({ code: 'custom', message: 'EXECD_QUEUES must name at least one queue' });
    return z.NEVER;
  }
  return out;
}

/** EXECD_WS_ORIGINS: comma-separated origins, each normalized to scheme://host[:port] as browsers send it. */
function parseOrigins(value: string, ctx: z.RefinementCtx): string[] {
  const out: string[] = [];
  for (const part of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    let origin: string;
    try {
      const url = new URL(part);
      origin = url.origin;
      if (origin === 'null' || url.pathname.length > 1 || url.search || url.hash) throw new Error('not an origin');
    } catch {
      ctx.addIssue({ code: 'custom', message: `EXECD_WS_ORIGINS entry "${part}" must be an origin such as https://dash.example.com:8443` });
      return z.NEVER;
    }
    if (!out.includes(origin)) out.push(origin);
  }
  return out;
}

/** One entry of EXECD_NOTIFY_ALLOW (docs/notify.md): a host (or `*.suffix`), maybe a port, and whether http:// may be used. */
export interface NotifyAllowEntry {
  /** Lower case, as URL.hostname gives it (an IPv6 literal in brackets); for a wildcard, the suffix with its leading dot. */
  host: string;
  wildcard: boolean;
  /** null: any port. */
  port: number | null;
  /** Written with http://: plain http is allowed to this host (https always is). */
  http: boolean;
}

/** EXECD_NOTIFY_ALLOW: comma-separated `[http://]host[:port]` or `[http://]*.suffix[:port]`. */
function parseNotifyAllow(value: string, ctx: z.RefinementCtx): NotifyAllowEntry[] {
  const out: NotifyAllowEntry[] = [];
  for (const part of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(?:(https?):\/\/)?(\*\.)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?$/.exec(part);
    let host: string | null = null;
    try {
      if (m) host = new URL(`https://${m[3]}`).hostname;
    } catch {
      host = null;
    }
    const port = m?.[4] === undefined ? null : Number(m[4]);
    if (!m || host === null || (port !== null && (port < 1 || port > 65535)) || (m[2] && (host.startsWith('[') || isIP(host) !== 0))) {
      ctx.addIssue({ code: 'custom', message: `EXECD_NOTIFY_ALLOW entry "${part}" must be [http://]host[:port] or [http://]*.domain[:port]` });
      return z.NEVER;
    }
    out.push({ host: m[2] ? `.${host}` : host, wildcard: Boolean(m[2]), port, http: m[1] === 'http' });
  }
  return out;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const envSchema = z.object({
  EXECD_HOST: z.string().min(1).default('127.0.0.1'),
  EXECD_PORT: intString('EXECD_PORT', 0, 65535).default(8080),
  EXECD_TOKEN: z.string().optional(),
  EXECD_QUEUES: z.string().transform(parseQueues).optional(),
  EXECD_QUEUE_CAPACITY: intString('EXECD_QUEUE_CAPACITY', 1).default(10000),
  EXECD_TIMEOUT_MS: intString('EXECD_TIMEOUT_MS', 1).default(60000),
  EXECD_JOB_TIMEOUT_MS: intString('EXECD_JOB_TIMEOUT_MS', 0, MAX_TIMEOUT_MS).default(DEFAULT_JOB_TIMEOUT_MS),
  EXECD_JOB_MAX_ATTEMPTS: intString('EXECD_JOB_MAX_ATTEMPTS', 1, 100).default(10),
  EXECD_KILL_GRACE_MS: intString('EXECD_KILL_GRACE_MS', 0, 600000).default(2000),
  EXECD_MAX_OUTPUT_BYTES: intString('EXECD_MAX_OUTPUT_BYTES', 0).default(67108864),
  EXECD_MAX_SYNC_RUNS: intString('EXECD_MAX_SYNC_RUNS', 1).default(64),
  EXECD_PIPE_DRAIN_MS: intString('EXECD_PIPE_DRAIN_MS', 0, 60000).default(250),
  EXECD_DATA_DIR: z.string().min(1).optional(),
  EXECD_OUTPUT_MEMORY_BYTES: intString('EXECD_OUTPUT_MEMORY_BYTES', 0).default(1048576),
  EXECD_RETAIN_JOBS: intString('EXECD_RETAIN_JOBS', 0).default(1000),
  EXECD_RETAIN_MS: intString('EXECD_RETAIN_MS', 0).default(86400000),
  EXECD_QUEUE_BACKEND: z.enum(['memory', 'redis']).default('memory'),
  EXECD_REDIS_URL: z.string().url().optional(),
  // many machines (docs/redis.md)
  EXECD_ROLE: z.enum(['all', 'api', 'worker']).default('all'),
  EXECD_REDIS_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" or "-", at most 64')
    .default('execd'),
  EXECD_NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,128}$/, 'letters, digits, ".", "_" or "-", at most 128')
    .optional(),
  EXECD_REDIS_STALL_MS: intString('EXECD_REDIS_STALL_MS', 1000, 600_000).default(5000),
  EXECD_BODY_LIMIT: intString('EXECD_BODY_LIMIT', 1024).default(1048576),
  EXECD_LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
  EXECD_PATH: z.string().min(1).default('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'),
  EXECD_SPAWNER: z.enum(['auto', 'native', 'child_process']).default('auto'),
  EXECD_TEST_BALLAST_BYTES: intString('EXECD_TEST_BALLAST_BYTES', 0, 2 ** 32).default(0),
  // security (docs/security.md)
  EXECD_TOKENS_FILE: z.string().min(1).optional(),
  EXECD_POLICY_FILE: z.string().min(1).optional(),
  EXECD_RUN_AS: z.string().min(1).optional(),
  EXECD_RATE_LIMIT: intString('EXECD_RATE_LIMIT', 0, 1_000_000).default(0),
  EXECD_HEADERS_TIMEOUT_MS: intString('EXECD_HEADERS_TIMEOUT_MS', 100, 3_600_000).default(10000),
  EXECD_REQUEST_TIMEOUT_MS: intString('EXECD_REQUEST_TIMEOUT_MS', 0, 3_600_000).default(30000),
  EXECD_IDLE_TIMEOUT_MS: intString('EXECD_IDLE_TIMEOUT_MS', 0, 86_400_000).default(0),
  EXECD_MAX_CONNECTIONS: intString('EXECD_MAX_CONNECTIONS', 1, 1_000_000).default(1024),
  // WebSocket viewers (docs/websocket.md)
  EXECD_WS_MAX_BUFFER_BYTES: intString('EXECD_WS_MAX_BUFFER_BYTES', 16384, 2 ** 30).default(1048576),
  EXECD_WS_TOTAL_BUFFER_BYTES: intString('EXECD_WS_TOTAL_BUFFER_BYTES', 65536, 2 ** 34).default(67108864),
  EXECD_WS_ORIGINS: z.string().transform(parseOrigins).optional(),
  EXECD_WS_PING_MS: intString('EXECD_WS_PING_MS', 10, 3_600_000).default(30000),
  // operations (docs/operations.md)
  EXECD_SHUTDOWN_GRACE_MS: intString('EXECD_SHUTDOWN_GRACE_MS', 1, 3_600_000).default(10000),
  EXECD_SHUTDOWN_TIMEOUT_MS: intString('EXECD_SHUTDOWN_TIMEOUT_MS', 1, 3_600_000).default(15000),
  EXECD_INSTANCE_DIR: z.string().min(1).optional(),
  EXECD_MAX_EVENT_LOOP_DELAY_MS: intString('EXECD_MAX_EVENT_LOOP_DELAY_MS', 0, 60_000).default(1000),
  // the dashboard (docs/ui.md)
  EXECD_UI: z.enum(['true', 'false'], { error: 'EXECD_UI must be true or false' }).default('true'),
  // completion callbacks (docs/notify.md)
  EXECD_NOTIFY_ALLOW: z.string().transform(parseNotifyAllow).optional(),
  EXECD_NOTIFY_SECRET: z.string().min(32, 'EXECD_NOTIFY_SECRET must be at least 32 characters').max(4096).optional(),
  EXECD_NOTIFY_TIMEOUT_MS: intString('EXECD_NOTIFY_TIMEOUT_MS', 100, 120_000).default(10000),
  EXECD_NOTIFY_ATTEMPTS: intString('EXECD_NOTIFY_ATTEMPTS', 1, 50).default(8),
  EXECD_NOTIFY_BACKOFF_MS: intString('EXECD_NOTIFY_BACKOFF_MS', 1, 3_600_000).default(1000),
  EXECD_NOTIFY_MAX_BODY_BYTES: intString('EXECD_NOTIFY_MAX_BODY_BYTES', 1024, 16_777_216).default(65536),
  EXECD_NOTIFY_MAX_PENDING: intString('EXECD_NOTIFY_MAX_PENDING', 1, 1_000_000).default(1000),
});

export interface Config {
  host: string;
  port: number;
  /** Accepted bearer tokens. */
  tokens: string[];
  /** True when no token was configured and one was generated at start. */
  tokenGenerated: boolean;
  queues: QueueSetting[];
  queueCapacity: number;
  syncTimeoutMs: number;
  /** Timeout of a job that gives none (EXECD_JOB_TIMEOUT_MS; 0 there: undefined, no default). A job's `timeoutMs: 0` asks for none. */
  jobTimeoutMs: number | undefined;
  /** Most attempts a job gets, retries included (EXECD_JOB_MAX_ATTEMPTS): a larger retry.attempts is lowered to it. */
  jobMaxAttempts: number;
  killGraceMs: number;
  maxOutputBytes: number;
  maxSyncRuns: number;
  pipeDrainMs: number;
  /**
   * EXECD_DATA_DIR: where job output beyond memory is kept (each instance in `<dataDir>/<instance id>/`).
   * Unset: a fresh private directory per start (ops/data-dir.ts).
   */
  dataDir: string | undefined;
  /** Bytes of each running job's stream kept in memory before the log spills to a file under dataDir. */
  outputMemoryBytes: number;
  /** Most finished jobs kept (record and output); the oldest-finished go first. */
  retainJobs: number;
  /** How long a finished job is kept, from its finish. */
  retainMs: number;
  queueBackend: 'memory' | 'redis';
  redisUrl: string | undefined;
  /** all: takes requests and runs jobs; api: takes requests only; worker: runs jobs only (redis backend). */
  role: 'all' | 'api' | 'worker';
  /** Every Redis key of this cluster starts with `<redisPrefix>:`. */
  redisPrefix: string;
  /** This process in the cluster: names its heartbeat and the jobs it runs. */
  nodeId: string;
  /** A worker whose heartbeat is missing this long has its running jobs declared lost. */
  redisStallMs: number;
  bodyLimit: number;
  logLevel: (typeof LOG_LEVELS)[number];
  /** PATH given to children. */
  childPath: string;
  /** How children are started: the native spawn helper when built (auto), or Node's child_process. */
  spawner: 'auto' | 'native' | 'child_process';
  /** Test only (benchmarks): bytes the server allocates and touches at start, to measure spawning from a big process. */
  testBallastBytes: number;
  /** Scoped tokens ({id, token | sha256, scopes}), JSON or YAML; re-read on SIGHUP. */
  tokensFile: string | undefined;
  /** The command policy, JSON or YAML; re-read on SIGHUP. Unset: every command is allowed. */
  policyFile: string | undefined;
  /** User (name, uid or uid:gid) commands run as when the server is root and no policy rule says otherwise. */
  runAs: string | undefined;
  /** Requests a minute per token id (token bucket, bursts up to the same number); 0 is no limit. */
  rateLimitPerMinute: number;
  /** Longest wait for a request's headers (slow clients are cut off). */
  headersTimeoutMs: number;
  /** Longest wait for a whole request, headers and body (0: none); the response may take longer. */
  requestTimeoutMs: number;
  /** A connection silent this long is closed (0: never; long runs and follows are silent). */
  idleTimeoutMs: number;
  /** Most simultaneous connections; more are closed at once. */
  maxConnections: number;
  /** A WebSocket viewer's send buffer: past it the viewer is throttled (replay) or skips to the live edge with a gap frame. */
  wsMaxBufferBytes: number;
  /** All viewers' send buffers together: past it every viewer holding more than a small share is treated as slow. */
  wsTotalBufferBytes: number;
  /** Browser origins (scheme://host[:port]) allowed to open WebSockets; a request with another Origin is 403, one without Origin passes. */
  wsOrigins: string[];
  /** Ping interval of WebSocket viewers; one that answers nothing (no pong, no progress) for a whole interval is terminated. */
  wsPingMs: number;
  /**
   * After SIGTERM/SIGINT, how long running jobs and runs may go on: SIGTERM to their groups at grace minus
   * killGraceMs, SIGKILL at grace.
   */
  shutdownGraceMs: number;
  /** Hard limit of a shutdown: past it whatever is left is SIGKILLed and the process exits with 1. */
  shutdownTimeoutMs: number;
  /**
   * Where each running server records its instance id and pid, so the next start can kill what a crashed one left
   * running and remove its files. Default: `<dataDir>/instances`, or `<tmpdir>/execd-instances-<uid>` without
   * EXECD_DATA_DIR.
   */
  instanceDir: string;
  /** Load shedding: past this mean event-loop delay, requests get 503 (healthz excepted); 0 turns it off. */
  maxEventLoopDelayMs: number;
  /** The web dashboard at /ui/ (EXECD_UI; docs/ui.md). */
  ui: boolean;
  /** Completion callbacks (docs/notify.md): the hosts a job's `notify.url` may name; empty: callbacks are refused (403). */
  notifyAllow: NotifyAllowEntry[];
  /** The server key each token's signing secret is derived from (HMAC-SHA256 of the token id); required with notifyAllow. */
  notifySecret: string | undefined;
  /** One callback POST: connect, send, and the answer's status line, at most this long. */
  notifyTimeoutMs: number;
  /** Most POSTs of one callback; retries wait notifyBackoffMs, doubling each time (at most 5 minutes). */
  notifyAttempts: number;
  notifyBackoffMs: number;
  /** Largest callback body: a Job above it is sent without its spec (`specOmitted: true`). */
  notifyMaxBodyBytes: number;
  /** Most callbacks waiting or in flight in this process; beyond it a new one fails at once (bounded memory). */
  notifyMaxPending: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host);
}

/** Settings whose values are secrets: an error names them but never shows the value. */
const SECRET_SETTINGS = new Set(['EXECD_TOKEN', 'EXECD_NOTIFY_SECRET']);

/** ` (got "…")` for an error line: the value as given, shortened, a URL's password masked, a secret never. */
function shownValue(key: string, value: string | undefined, message: string): string {
  if (value === undefined || SECRET_SETTINGS.has(key)) return '';
  const masked = value.replace(/(\/\/[^/@:]*:)[^/@]*@/, '$1***@'); // redis://user:password@host → redis://user:***@host
  const short = masked.length > 120 ? `${masked.slice(0, 120)}…` : masked;
  return message.includes(JSON.stringify(short)) ? '' : ` (got ${JSON.stringify(short)})`;
}

/** Parse settings from an environment map; throws ConfigError with one clear line. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('EXECD_') && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const key = String(issue.path[0] ?? '');
    const msg = issue.message.startsWith(key) ? issue.message : `${key}: ${issue.message}`;
    throw new ConfigError(`invalid setting ${msg}${shownValue(key, present[key], msg)}`);
  }
  const e = parsed.data;
  if (e.EXECD_HOST !== 'localhost' && !isIP(e.EXECD_HOST)) {
    throw new ConfigError(`invalid setting EXECD_HOST: "${e.EXECD_HOST}" is not an IP address or localhost`);
  }
  const tokens = (e.EXECD_TOKEN ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  if (tokens.some((t) => t.length < 16)) {
    throw new ConfigError('invalid setting EXECD_TOKEN: every token must be at least 16 characters');
  }
  let tokenGenerated = false;
  if (tokens.length === 0 && e.EXECD_TOKENS_FILE === undefined) {
    if (!isLoopback(e.EXECD_HOST)) {
      throw new ConfigError(
        `refusing to listen on non-loopback EXECD_HOST=${e.EXECD_HOST} without a configured token: set EXECD_TOKEN or EXECD_TOKENS_FILE`,
      );
    }
    tokens.push(randomBytes(24).toString('base64url'));
    tokenGenerated = true;
  }
  if (e.EXECD_REQUEST_TIMEOUT_MS > 0 && e.EXECD_HEADERS_TIMEOUT_MS > e.EXECD_REQUEST_TIMEOUT_MS) {
    throw new ConfigError(`invalid setting EXECD_HEADERS_TIMEOUT_MS: ${e.EXECD_HEADERS_TIMEOUT_MS} must not exceed EXECD_REQUEST_TIMEOUT_MS (${e.EXECD_REQUEST_TIMEOUT_MS})`);
  }
  checkShutdownOrder(e.EXECD_KILL_GRACE_MS, e.EXECD_SHUTDOWN_GRACE_MS, e.EXECD_SHUTDOWN_TIMEOUT_MS);
  if (e.EXECD_QUEUE_BACKEND === 'redis' && !e.EXECD_REDIS_URL) {
    throw new ConfigError('invalid setting EXECD_REDIS_URL: required when EXECD_QUEUE_BACKEND=redis');
  }
  if ((e.EXECD_NOTIFY_ALLOW ?? []).length > 0 && e.EXECD_NOTIFY_SECRET === undefined) {
    throw new ConfigError('invalid setting EXECD_NOTIFY_SECRET: required when EXECD_NOTIFY_ALLOW is set (the key callbacks are signed with; docs/notify.md)');
  }
  if (e.EXECD_ROLE !== 'all' && e.EXECD_QUEUE_BACKEND !== 'redis') {
    throw new ConfigError(`invalid setting EXECD_ROLE: ${e.EXECD_ROLE} needs EXECD_QUEUE_BACKEND=redis (with the memory backend one process does both)`);
  }
  return {
    host: e.EXECD_HOST,
    port: e.EXECD_PORT,
    tokens,
    tokenGenerated,
    queues: e.EXECD_QUEUES ?? [{ name: 'default', concurrency: availableParallelism() }],
    queueCapacity: e.EXECD_QUEUE_CAPACITY,
    syncTimeoutMs: e.EXECD_TIMEOUT_MS,
    jobTimeoutMs: e.EXECD_JOB_TIMEOUT_MS === 0 ? undefined : e.EXECD_JOB_TIMEOUT_MS,
    jobMaxAttempts: e.EXECD_JOB_MAX_ATTEMPTS,
    killGraceMs: e.EXECD_KILL_GRACE_MS,
    maxOutputBytes: e.EXECD_MAX_OUTPUT_BYTES,
    maxSyncRuns: e.EXECD_MAX_SYNC_RUNS,
    pipeDrainMs: e.EXECD_PIPE_DRAIN_MS,
    dataDir: e.EXECD_DATA_DIR,
    outputMemoryBytes: e.EXECD_OUTPUT_MEMORY_BYTES,
    retainJobs: e.EXECD_RETAIN_JOBS,
    retainMs: e.EXECD_RETAIN_MS,
    queueBackend: e.EXECD_QUEUE_BACKEND,
    redisUrl: e.EXECD_REDIS_URL,
    role: e.EXECD_ROLE,
    redisPrefix: e.EXECD_REDIS_PREFIX,
    nodeId: e.EXECD_NODE_ID ?? `${hostname().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100)}-${process.pid}`,
    redisStallMs: e.EXECD_REDIS_STALL_MS,
    bodyLimit: e.EXECD_BODY_LIMIT,
    logLevel: e.EXECD_LOG_LEVEL,
    childPath: e.EXECD_PATH,
    spawner: e.EXECD_SPAWNER,
    testBallastBytes: e.EXECD_TEST_BALLAST_BYTES,
    tokensFile: e.EXECD_TOKENS_FILE,
    policyFile: e.EXECD_POLICY_FILE,
    runAs: e.EXECD_RUN_AS,
    rateLimitPerMinute: e.EXECD_RATE_LIMIT,
    headersTimeoutMs: e.EXECD_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: e.EXECD_REQUEST_TIMEOUT_MS,
    idleTimeoutMs: e.EXECD_IDLE_TIMEOUT_MS,
    maxConnections: e.EXECD_MAX_CONNECTIONS,
    wsMaxBufferBytes: e.EXECD_WS_MAX_BUFFER_BYTES,
    wsTotalBufferBytes: e.EXECD_WS_TOTAL_BUFFER_BYTES,
    wsOrigins: e.EXECD_WS_ORIGINS ?? [],
    wsPingMs: e.EXECD_WS_PING_MS,
    shutdownGraceMs: e.EXECD_SHUTDOWN_GRACE_MS,
    shutdownTimeoutMs: e.EXECD_SHUTDOWN_TIMEOUT_MS,
    // Per data directory when one is set (its instances recover each other), else per user.
    instanceDir: e.EXECD_INSTANCE_DIR ?? (e.EXECD_DATA_DIR !== undefined ? join(e.EXECD_DATA_DIR, 'instances') : join(tmpdir(), `execd-instances-${process.getuid?.() ?? 'user'}`)),
    maxEventLoopDelayMs: e.EXECD_MAX_EVENT_LOOP_DELAY_MS,
    ui: e.EXECD_UI === 'true',
    notifyAllow: e.EXECD_NOTIFY_ALLOW ?? [],
    notifySecret: e.EXECD_NOTIFY_SECRET,
    notifyTimeoutMs: e.EXECD_NOTIFY_TIMEOUT_MS,
    notifyAttempts: e.EXECD_NOTIFY_ATTEMPTS,
    notifyBackoffMs: e.EXECD_NOTIFY_BACKOFF_MS,
    notifyMaxBodyBytes: e.EXECD_NOTIFY_MAX_BODY_BYTES,
    notifyMaxPending: e.EXECD_NOTIFY_MAX_PENDING,
  };
}

/** A shutdown must fit: the kill grace inside the drain grace, the drain grace inside the hard timeout. */
function checkShutdownOrder(killGraceMs: number, graceMs: number, timeoutMs: number): void {
  const order = 'EXECD_KILL_GRACE_MS < EXECD_SHUTDOWN_GRACE_MS < EXECD_SHUTDOWN_TIMEOUT_MS';
  if (killGraceMs >= graceMs) {
    throw new ConfigError(`invalid setting EXECD_SHUTDOWN_GRACE_MS: ${graceMs} must be more than EXECD_KILL_GRACE_MS (${killGraceMs}); the order is ${order}`);
  }
  if (graceMs >= timeoutMs) {
    throw new ConfigError(`invalid setting EXECD_SHUTDOWN_TIMEOUT_MS: ${timeoutMs} must be more than EXECD_SHUTDOWN_GRACE_MS (${graceMs}); the order is ${order}`);
  }
}

export const loadConfig = (env: NodeJS.ProcessEnv = process.env): Config => parseConfig(env);
