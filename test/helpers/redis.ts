import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { Job } from '../../src/schemas/jobs.js';
import type { TestApp } from './app.js';
import { liveMembers, SERVER_TOKEN, startServer, tempInstanceDir, type ServerProcess } from './server.js';
import { connect, type Client } from './stream.js';
import { waitFor } from './proc.js';

/**
 * Multi-node tests of the Redis backend: the shared Redis (127.0.0.1:6379, as in CI)
 * with a fresh key prefix per test, a private redis-server for the tests that stop
 * it, and clusters of real execd processes.
 */

export const REDIS_URL = process.env.EXECD_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * Called first by a test file that needs Redis: throws the one line that says what is missing (found by
 * test/helpers/redis-setup.ts, vitest's globalSetup), or, with `server`, when redis-server is not installed.
 */
export function requireRedis(options: { server?: boolean } = {}): void {
  const missing = process.env.EXECD_TEST_REDIS_MISSING;
  if (missing) throw new Error(missing);
  if (options.server && spawnSync('redis-server', ['--version']).status !== 0) {
    throw new Error('npm test: this file starts redis-servers of its own, and redis-server is not installed: apt-get install redis-server');
  }
}

/** A key prefix no other test (or run) uses. */
export const freshPrefix = (): string => `execd-test-${randomBytes(6).toString('hex')}`;

/** Every key of `url` that starts with `pattern` (a SCAN MATCH pattern). */
async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const keys: string[] = [];
  let cursor = '0';
  for (let i = 0; i < 100_000; i++) {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    keys.push(...batch);
    cursor = next;
    if (cursor === '0') break;
  }
  return keys;
}

/** A short-lived client: no reconnect storms when the server is gone. */
function client(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => null, lazyConnect: true, enableOfflineQueue: false });
  redis.on('error', () => {}); // a refused connection rejects the command that needed it
  return redis;
}

/** Keys under a prefix: those of `<prefix>:*`, and any that start with the prefix but not `<prefix>:` (strays). */
export async function keysOf(prefix: string, url = REDIS_URL): Promise<{ keys: string[]; strays: string[] }> {
  const redis = client(url);
  try {
    await redis.connect();
    const all = await scanKeys(redis, `${prefix}*`);
    return { keys: all.filter((k) => k.startsWith(`${prefix}:`)), strays: all.filter((k) => !k.startsWith(`${prefix}:`)) };
  } finally {
    redis.disconnect();
  }
}

/** Delete every key that starts with `<prefix>:` (and the prefix's strays); the number deleted. */
export async function deleteKeys(prefix: string, url = REDIS_URL): Promise<number> {
  const redis = client(url);
  try {
    await redis.connect();
    const keys = await scanKeys(redis, `${prefix}*`);
    for (let i = 0; i < keys.length; i += 500) await redis.unlink(...keys.slice(i, i + 500));
    return keys.length;
  } finally {
    redis.disconnect();
  }
}

/** A free loopback port (the kernel's pick, released at once). */
export async function freePort(): Promise<number> {
  const srv = createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

/** True when a Redis answers PING on the port. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let data = '';
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      data += d.toString();
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
  });
}

/** util-linux setpriv with --pdeathsig (Debian 11 and later). */
const HAS_SETPRIV = spawnSync('setpriv', ['--pdeathsig', 'keep', 'true']).status === 0;

export interface PrivateRedis {
  url: string;
  port: number;
  dir: string;
  /** The redis-server's pid now (it changes on restart); null while stopped. */
  readonly pid: number | null;
  /** Stop it (SIGTERM by default: AOF flushed, as an orderly restart; SIGKILL: a crash) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Start it again on the same port and dir; resolves once it answers PING. */
  start(): Promise<void>;
  /** stop() then start(). */
  restart(signal?: NodeJS.Signals): Promise<void>;
  /** Stop for good and remove its dir. */
  close(): Promise<void>;
}

/**
 * A redis-server of the test's own on a free port, with AOF (appendfsync always: every
 * write acknowledged is on disk), no RDB snapshots, in a temp dir; its log is kept in memory.
 */
export async function startRedis(options: { aof?: boolean } = {}): Promise<PrivateRedis> {
  const aof = options.aof ?? true;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'execd-redis-'));
  const log: string[] = [];
  let child: ChildProcess | null = null;
  let exited: Promise<unknown> = Promise.resolve();

  const start = async () => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--daemonize', 'no', '--logfile', '', '--protected-mode', 'yes'];
    args.push('--appendonly', aof ? 'yes' : 'no');
    if (aof) args.push('--appendfsync', 'always');
    // setpriv --pdeathsig: the kernel SIGKILLs it when this test process dies, however it dies (setpriv execs it: same pid).
    const c = HAS_SETPRIV ? spawn('setpriv', ['--pdeathsig', 'SIGKILL', '--', 'redis-server', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    exited = once(c, 'exit');
    c.stdout!.setEncoding('utf8').on('data', (d: string) => log.push(d));
    c.stderr!.setEncoding('utf8').on('data', (d: string) => log.push(d));
    const up = await waitFor(async () => c.exitCode === null && (await ping(port)), 10_000, 25);
    if (!up) throw new Error(`redis-server did not start on ${port}: ${log.join('')}`);
  };
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const c = child;
    if (!c) return;
    child = null;
    if (c.exitCode === null && c.signalCode === null) {
      c.kill(signal);
      const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    dir,
    get pid() {
      return child?.pid ?? null;
    },
    stop,
    start,
    async restart(signal) {
      await stop(signal);
      await start();
    },
    async close() {
      await stop('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------- clusters of execd processes ----------

export type Role = 'all' | 'api' | 'worker';

export interface Node extends ServerProcess {
  name: string;
  role: Role;
  /** The server process's pid. */
  pid: number;
  /** SIGTERM, SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
  /** kill -9, and wait for the exit. */
  crash(): Promise<void>;
}

export interface ClusterOptions {
  redisUrl?: string;
  prefix?: string;
  /** Environment of every node (each node's own comes on top). */
  env?: Record<string, string>;
}

const dataDirs: string[] = [];
function tempDataDir(): string {
  if (dataDirs.length === 0) process.once('exit', () => dataDirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  const dir = mkdtempSync(join(tmpdir(), 'execd-redis-data-'));
  dataDirs.push(dir);
  return dir;
}

/**
 * Execd processes sharing one Redis and key prefix. Each node has its own instance and data
 * dirs (so no start-up recovery of one node ever kills another's jobs: what a test sees
 * killed, the Redis backend killed). `stop()` stops every node this cluster started
 * (SIGTERM, then SIGKILL of its pid), kills the process groups the test registered
 * with `track()` if any member is still alive, and deletes the prefix's keys.
 */
export class Cluster {
  readonly prefix: string;
  readonly redisUrl: string;
  readonly nodes: Node[] = [];
  private readonly env: Record<string, string>;
  private readonly pgids = new Set<number>();
  private count = 0;

  constructor(options: ClusterOptions = {}) {
    this.prefix = options.prefix ?? freshPrefix();
    this.redisUrl = options.redisUrl ?? REDIS_URL;
    this.env = options.env ?? {};
  }

  /** Start one node and wait until it listens. */
  async start(role: Role, env: Record<string, string> = {}): Promise<Node> {
    const name = `${role}-${++this.count}`;
    const server = await startServer({
      EXECD_QUEUE_BACKEND: 'redis',
      EXECD_REDIS_URL: this.redisUrl,
      EXECD_REDIS_PREFIX: this.prefix,
      EXECD_ROLE: role,
      EXECD_NODE_ID: `${this.prefix}-${name}`,
      EXECD_QUEUES: 'default:2',
      EXECD_INSTANCE_DIR: tempInstanceDir(),
      EXECD_DATA_DIR: tempDataDir(),
      EXECD_KILL_GRACE_MS: '500',
      EXECD_SHUTDOWN_GRACE_MS: '1000',
      EXECD_SHUTDOWN_TIMEOUT_MS: '4000',
      ...this.env,
      ...env,
    });
    const child = server.child;
    const alive = () => child.exitCode === null && child.signalCode === null;
    const node: Node = Object.assign(server, {
      name,
      role,
      pid: child.pid!,
      async stop(graceMs = 6000) {
        if (!alive()) return;
        child.kill('SIGTERM');
        const timer = setTimeout(() => alive() && child.kill('SIGKILL'), graceMs);
        await server.exited;
        clearTimeout(timer);
      },
      async crash() {
        if (alive()) child.kill('SIGKILL');
        await server.exited;
      },
    });
    this.nodes.push(node);
    return node;
  }

  /** Start several nodes at once, in the order given. */
  startAll(specs: Array<Role | [Role, Record<string, string>]>): Promise<Node[]> {
    return Promise.all(specs.map((s) => (typeof s === 'string' ? this.start(s) : this.start(s[0], s[1]))));
  }

  /** A process group to kill at the end if the test left it alive (a failed test). */
  track(pgid: number): void {
    this.pgids.add(pgid);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    for (const pgid of this.pgids) {
      if (liveMembers(pgid).length > 0) {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    }
    this.pgids.clear();
    await deleteKeys(this.prefix, this.redisUrl).catch(() => 0);
  }
}

// ---------- the API through one node ----------

export interface ApiReply<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

interface CallInit {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** A request through `node` with the test token; the parsed JSON body (or text). */
export async function call<T = Record<string, unknown>>(node: ServerProcess, path: string, init: CallInit = {}): Promise<ApiReply<T>> {
  const res = await node.api(path, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
    headers: init.headers ?? {},
    ...(init.signal ? { signal: init.signal } : {}),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body: body as T };
}

export async function submitJob(node: ServerProcess, body: object, headers: Record<string, string> = {}): Promise<Job> {
  const r = await call<Job>(node, '/v1/jobs', { body, headers });
  if (r.status !== 202) throw new Error(`submit through ${node.url}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function jobOf(node: ServerProcess, id: string, waitMs = 0): Promise<Job> {
  const r = await call<Job>(node, `/v1/jobs/${id}${waitMs ? `?waitMs=${waitMs}` : ''}`);
  if (r.status !== 200) throw new Error(`GET job ${id} through ${node.url}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

const TERMINAL = new Set(['succeeded', 'failed', 'timed_out', 'canceled', 'lost']);
export const isTerminal = (job: Job): boolean => TERMINAL.has(job.state);

/** Long-poll through `node` until the job is terminal (or the time is up: the job as it is then). */
export async function settleJob(node: ServerProcess, id: string, timeoutMs = 20_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await jobOf(node, id, Math.min(10_000, Math.max(1, deadline - Date.now())));
    if (isTerminal(job) || Date.now() >= deadline) return job;
  }
}

/** Poll through `node` until the job runs a process; throws if it does not within the time. */
export async function runningJob(node: ServerProcess, id: string, timeoutMs = 10_000): Promise<Job> {
  let job: Job | undefined;
  await waitFor(async () => {
    job = await jobOf(node, id);
    return (job.state === 'running' && job.pid !== null) || isTerminal(job);
  }, timeoutMs, 25);
  if (job?.state !== 'running' || job.pid === null) throw new Error(`job ${id} is not running: ${JSON.stringify(job)}`);
  return job;
}

/** Every job the list shows through `node`, page by page (`limit` each). */
export async function listAll(node: ServerProcess, query = '', limit = 100): Promise<Job[]> {
  const out: Job[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const q = new URLSearchParams(query);
    q.set('limit', String(limit));
    if (cursor) q.set('cursor', cursor);
    const r = await call<{ items: Job[]; nextCursor: string | null }>(node, `/v1/jobs?${q}`);
    if (r.status !== 200) throw new Error(`list through ${node.url}: ${r.status} ${JSON.stringify(r.body)}`);
    out.push(...r.body.items);
    cursor = r.body.nextCursor;
    if (!cursor || r.body.items.length === 0) break;
  }
  return out;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  trailers: Record<string, string | undefined>;
}

/** GET with node:http (fetch hides trailers); `onChunk` sees each chunk as it arrives. */
export function rawGet(node: ServerProcess, path: string, onChunk?: (chunk: Buffer, soFar: Buffer) => void): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(`${node.url}${path}`, { headers: { authorization: `Bearer ${SERVER_TOKEN}` }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        onChunk?.(chunk, Buffer.concat(chunks));
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), trailers: res.trailers as Record<string, string> }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A WebSocket client (test/helpers/stream.ts) on a node, with the server token. */
export const connectTo = (node: ServerProcess, path: string): Promise<Client> =>
  connect({ url: node.url } as TestApp, path, { token: SERVER_TOKEN });

/** The parent pid of a process, or null when it is gone. */
export function parentOf(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** A file's lines (none when it does not exist). */
export function linesOf(file: string): string[] {
  try {
    return readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** `promise`, or a rejection naming `what` (and what `detail()` says then) after `ms`: a hang fails fast and says why. */
export function within<T>(promise: Promise<T>, ms: number, what: string, detail: () => unknown = () => ''): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms ${JSON.stringify(detail())}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
