import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { createInterface } from 'node:readline';

export interface LoopResult {
  ops: number;
  seconds: number;
  rate: number;
  p50: number;
  p99: number;
}

/** Run `op` with `concurrency` in flight for `durationMs`; latencies in ms. */
export async function closedLoop(concurrency: number, durationMs: number, op: () => Promise<void>): Promise<LoopResult> {
  const latencies: number[] = [];
  const t0 = performance.now();
  const end = t0 + durationMs;
  const worker = async () => {
    while (performance.now() < end) {
      const s = performance.now();
      await op();
      latencies.push(performance.now() - s);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN;
  return { ops: latencies.length, seconds, rate: latencies.length / seconds, p50: q(0.5), p99: q(0.99) };
}

export const fmt = (r: LoopResult) =>
  `${r.rate.toFixed(0).padStart(6)}/s  p50 ${r.p50.toFixed(2).padStart(6)} ms  p99 ${r.p99.toFixed(2).padStart(6)} ms  (${r.ops} ops)`;

/** Spawn /bin/true and wait for its exit: the raw rate a Node process can reach. */
export const rawSpawnTrue = () =>
  new Promise<void>((resolve, reject) => {
    const c = spawn('/bin/true', [], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    c.once('error', reject);
    c.once('close', () => resolve());
  });

export const TOKEN = 'bench-token-0123456789abcdef';

/**
 * execd as `npm start` runs it: compiled (npm run build, once per benchmark process), then
 * `node dist/main.js`. Through tsx the server spends about a tenth more CPU per request.
 */
let built = false;
export function execdMain(): string[] {
  // A main.js built elsewhere (EXECD_BENCH_ENTRY=/tmp/x/dist/main.js): no build of dist/ here, whatever state the tree is in.
  if (process.env.EXECD_BENCH_ENTRY) return [process.env.EXECD_BENCH_ENTRY];
  if (!built) {
    const r = spawnSync('npm', ['run', 'build', '--silent'], { cwd: new URL('..', import.meta.url).pathname, stdio: 'inherit' });
    if (r.status !== 0) throw new Error('npm run build failed');
    built = true;
  }
  return ['dist/main.js'];
}

/** As npm start, the Dockerfile and docs/execd.service run it; MALLOC_ARENA_MAX=unset: glibc's default, to compare. */
const mallocEnv = (): Record<string, string> =>
  process.env.MALLOC_ARENA_MAX === 'unset' ? {} : { MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? '2' };

/** Start execd in its own process on a free port; resolves with its URL. */
export async function startExecd(env: Record<string, string> = {}): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const root = new URL('..', import.meta.url).pathname;
  const child = spawn(process.execPath, execdMain(), {
    cwd: root,
    env: {
      PATH: process.env.PATH!,
      HOME: process.env.HOME ?? '/',
      EXECD_PORT: '0',
      EXECD_TOKEN: TOKEN,
      EXECD_LOG_LEVEL: 'info',
      ...mallocEnv(),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`execd exited with ${code}`)));
    lines.on('line', (line) => {
      const m = /execd listening on (http:\/\/[^"\s]+)/.exec(line);
      if (m) resolve(m[1]!);
    });
    lines.on('line', () => {}); // keep draining the log so the server never blocks on it
  });
  return {
    url,
    child,
    async stop() {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** POST JSON with keep-alive; resolves with status and body. */
export function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), authorization: `Bearer ${TOKEN}`, ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** A free loopback port for a peer server. */
export async function freePort(): Promise<number> {
  const srv = createNetServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as { port: number };
  srv.close();
  return port;
}

/** GET with the bench token and keep-alive. */
export function getJson(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent, headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
      })
      .on('error', reject);
  });
}

export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) * 1024;
}

/**
 * Start execd in its own process on a free port and wait until GET `readyPath` answers 200
 * (works at any log level, and on worker nodes, which serve only /healthz, /readyz, /metrics).
 */
export async function startExecdReady(
  env: Record<string, string> = {},
  readyPath = '/readyz',
): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const root = new URL('..', import.meta.url).pathname;
  const port = await freePort();
  const child = spawn(process.execPath, execdMain(), {
    cwd: root,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/', EXECD_TOKEN: TOKEN, EXECD_LOG_LEVEL: 'warn', ...mallocEnv(), ...env, EXECD_PORT: String(port) },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`execd exited with ${child.exitCode}`);
    if (await fetch(`${url}${readyPath}`).then((r) => r.ok, () => false)) break;
    if (i > 400) throw new Error(`execd did not become ready at ${url}${readyPath}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}
