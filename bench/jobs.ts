/**
 * Jobs benchmark (figures printed, not asserted), each against a peer measured
 * on the same machine in the same run:
 *  1. N jobs of /bin/true end to end (submitted over HTTP, until all finished),
 *     jobs/s, vs a raw child_process.spawn loop of /bin/true at the same
 *     concurrency (target ≥ 80 %) and vs a minimal BullMQ worker spawning
 *     /bin/true at the same concurrency (bench/bullmq-peer.ts, Redis at
 *     BENCH_REDIS_URL or redis://127.0.0.1:6379; target ≥ 2×, issue 8).
 *  2. POST /v1/jobs accepted/s vs a bare Fastify POST route answering 202
 *     (target ≥ 70 %), both with autocannon, both servers in their own process.
 *  3. RSS of the server with 100,000 jobs queued (target ≤ 2 KiB per job).
 *
 *   npx tsx bench/jobs.ts [jobs=20000] [concurrency=8] [post-rounds=5] [queued=100000]
 * (jobs=0 skips the first part.) EXECD_BENCH_ENTRY_B=/elsewhere/dist/main.js adds that build of execd
 * to part 2's alternating rounds, beside the one under test (EXECD_BENCH_ENTRY or dist/): an A/B of
 * two builds under the same load, with the CPU per request of each and its ratio to A per round.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import { bullmqPeer } from './bullmq-peer.js';
import { execdMain, postJson, rawSpawnTrue, rssBytes, TOKEN, freePort } from './lib.js';

const [JOBS = 20_000, CONCURRENCY = 8, POST_ROUNDS = 5, QUEUED = 100_000] = process.argv.slice(2).map(Number);
const ROOT = new URL('..', import.meta.url).pathname;
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const AUTH = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };

interface Server {
  url: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** A node process running `args`, ready once GET `readyPath` answers. */
async function startServer(args: string[], env: Record<string, string>, readyPath: string): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/', PORT: String(port), EXECD_PORT: String(port), ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    const ok = await fetch(`${url}${readyPath}`).then((r) => r.ok, () => false);
    if (ok) break;
    if (i > 300) throw new Error('server did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    child,
    async stop() {
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

const startExecd = (env: Record<string, string>) =>
  startServer(execdMain(), { EXECD_TOKEN: TOKEN, EXECD_LOG_LEVEL: 'warn', ...env }, '/healthz');

const BARE_FASTIFY = `
import Fastify from 'fastify';
const app = Fastify({ logger: false });
let n = 0;
app.post('/v1/jobs', async (request, reply) => reply.code(202).send({ id: String(++n), state: 'queued' }));
app.get('/healthz', async () => ({ status: 'ok' }));
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
`;

/**
 * The execd app itself with a no-op POST route declared like POST /v1/jobs
 * (scope jobs:write, operationId submitJob, so authenticated, rate-limited and
 * audited alike): what the route pays before its own work.
 */
const EXECD_NOOP = `
import { buildApp, LOG_REDACT } from '${ROOT}src/app.ts';
import { parseConfig } from '${ROOT}src/config.ts';
import { registerAuth } from '${ROOT}src/plugins/auth.ts';
const config = parseConfig({ EXECD_TOKEN: '${TOKEN}', EXECD_QUEUES: 'hold:1' });
const app = await buildApp(config, { logger: { level: 'warn', redact: { paths: LOG_REDACT, censor: '[redacted]' } } });
await app.register(async (v1) => {
  registerAuth(v1);
  v1.post('/jobs', { config: { scope: 'jobs:write' }, schema: { operationId: 'submitJob', hide: true } }, async (request, reply) => reply.code(202).send({ id: '1', state: 'queued' }));
}, { prefix: '/noop' });
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
`;

async function api<T>(server: Server, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${server.url}${path}`, { method: body === undefined ? 'GET' : 'POST', headers: AUTH, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

const queueInfo = async (server: Server, name: string) =>
  (await api<{ name: string; queued: number; running: number; processed: number }[]>(server, '/v1/queues')).find((q) => q.name === name)!;

const pct = (a: number, b: number) => `${((a / b) * 100).toFixed(1)} %`;

/** `n` spawns of /bin/true, `concurrency` at a time, as a bare Node loop would do them; seconds taken. */
async function rawSpawns(n: number): Promise<number> {
  let left = n;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (left-- > 0) await rawSpawnTrue();
    }),
  );
  return (performance.now() - t0) / 1000;
}

/**
 * `n` jobs of /bin/true submitted over HTTP (16 in flight, keep-alive node:http as bench/lib's
 * postJson: fetch cost this process 2.5× the CPU per job, on the same two cores) until all have
 * finished; seconds taken.
 */
async function execdJobs(execd: Server, n: number): Promise<number> {
  const before = (await queueInfo(execd, 'bench')).processed;
  let toSubmit = n;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (toSubmit-- > 0) {
        const r = await postJson(`${execd.url}/v1/jobs`, { argv: ['/bin/true'], queue: 'bench' });
        if (r.status !== 202) throw new Error(`/v1/jobs: ${r.status} ${r.body}`);
      }
    }),
  );
  while ((await queueInfo(execd, 'bench')).processed < before + n) await new Promise((r) => setTimeout(r, 20));
  return (performance.now() - t0) / 1000;
}

/** The BullMQ peer over `n` jobs (after an untimed warm-up in its fresh process); seconds taken, or null without Redis. */
async function bullmqJobs(n: number): Promise<number | null> {
  try {
    const r = await bullmqPeer({ jobs: n, concurrency: CONCURRENCY, redisUrl: REDIS_URL, warmup: 200 });
    return r.ms / 1000;
  } catch (err) {
    console.log(`   BullMQ peer failed (${(err as Error).message}); is Redis at ${REDIS_URL}? It is left out`);
    return null;
  }
}

/**
 * Interleaved slices (raw, then each execd, then BullMQ, ten times) so that a
 * neighbour's load on this machine weighs on every side alike; the totals are
 * compared. execd runs twice: with its default spawner (EXECD_SPAWNER=auto: the
 * native one when built) and with child_process, the raw loop's own mechanism.
 */
async function endToEnd(): Promise<void> {
  const slices = 10;
  const slice = Math.ceil(JOBS / slices);
  console.log(`\n1. ${slice * slices} jobs of /bin/true end to end, ${CONCURRENCY} workers, vs a raw child_process.spawn loop at ${CONCURRENCY} in flight and a minimal BullMQ worker (${slices} interleaved slices)`);
  const env = { EXECD_QUEUES: `bench:${CONCURRENCY}`, EXECD_QUEUE_CAPACITY: String(JOBS + 1000), EXECD_RETAIN_JOBS: '1000' };
  const servers = [await startExecd({ ...env, EXECD_SPAWNER: 'auto' }), await startExecd({ ...env, EXECD_SPAWNER: 'child_process' })];
  try {
    const names = await Promise.all(servers.map(async (s) => (await api<{ spawner: string }>(s, '/v1/info')).spawner));
    await rawSpawns(200); // warm-up
    for (const s of servers) await execdJobs(s, 200);
    let raw = 0;
    let bull: number | null = 0;
    const ours = servers.map(() => 0);
    const ratios: string[][] = servers.map(() => []);
    for (let i = 0; i < slices; i++) {
      const r = await rawSpawns(slice);
      raw += r;
      for (const [k, s] of servers.entries()) {
        const e = await execdJobs(s, slice);
        ours[k]! += e;
        ratios[k]!.push(`${((r / e) * 100).toFixed(0)}%`);
      }
      if (bull !== null) {
        const b = await bullmqJobs(slice);
        bull = b === null ? null : bull + b;
      }
    }
    const rawRate = (slice * slices) / raw;
    const bullRate = bull === null ? null : (slice * slices) / bull;
    console.log(`   raw spawn loop               ${rawRate.toFixed(1)} spawns/s`);
    if (bullRate !== null) console.log(`   BullMQ peer (1 worker, ${CONCURRENCY} concurrency) ${bullRate.toFixed(1)} jobs/s`);
    for (const [k, name] of names.entries()) {
      const rate = (slice * slices) / ours[k]!;
      const vsBull = bullRate === null ? '' : `; ${(rate / bullRate).toFixed(2)}× BullMQ (target ≥ 2×)`;
      console.log(`   execd jobs, spawner ${name.slice(0, 13).padEnd(13)} ${rate.toFixed(1)} jobs/s = ${pct(rate, rawRate)} of raw (target ≥ 80 %)${vsBull}; per slice vs raw ${ratios[k]!.join(' ')}`);
    }
  } finally {
    for (const s of servers) await s.stop();
  }
}

interface CannonResult {
  accepted: number;
  other: number;
  rate: number;
  p50: number;
  p99: number;
}

/** autocannon POSTs of one job body to `url`. */
async function cannon(url: string, seconds: number, amount?: number): Promise<CannonResult> {
  const result = await autocannon({
    url,
    method: 'POST',
    headers: AUTH,
    body: JSON.stringify({ argv: ['/bin/true'], queue: 'hold' }),
    connections: 32,
    ...(amount === undefined ? { duration: seconds } : { amount }),
  });
  const accepted = result['2xx'];
  const rate = accepted / (result.duration || seconds);
  return { accepted, other: result.non2xx + result.errors, rate, p50: result.latency.p50, p99: result.latency.p99 };
}

/** CPU seconds (user + system) the process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

type Peer = { name: string; server: Server; path: string };

/** Alternate short autocannon rounds over the servers so that a busy neighbour hits them alike. */
async function compareRounds(peers: Peer[], rounds: number, seconds: number) {
  const rate = new Map<string, number[]>(peers.map((p) => [p.name, []]));
  const cpu = new Map<string, number[]>(peers.map((p) => [p.name, []]));
  const ratio = new Map<string, number[]>(peers.map((p) => [p.name, []]));
  for (let i = 0; i < rounds; i++) {
    let base = 0;
    for (const p of peers) {
      const c0 = cpuSeconds(p.server.child.pid!);
      const r = await cannon(p.server.url + p.path, seconds);
      rate.get(p.name)!.push(r.rate);
      cpu.get(p.name)!.push(((cpuSeconds(p.server.child.pid!) - c0) / (r.accepted + r.other)) * 1e6);
      if (p === peers[0]) base = r.rate;
      ratio.get(p.name)!.push(r.rate / base);
    }
  }
  return peers.map((p) => ({
    name: p.name,
    rate: median(rate.get(p.name)!),
    rounds: rate.get(p.name)!,
    cpu: median(cpu.get(p.name)!),
    cpus: cpu.get(p.name)!,
    ratio: median(ratio.get(p.name)!),
  }));
}

/** Stop a server holding a queue: its blocker is canceled first, so that its process never outlives the server. */
async function stopHeld(server: Server): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const running = await api<{ items: { id: string }[] }>(server, '/v1/jobs?state=running&queue=hold').catch(() => ({ items: [] }));
  for (const { id } of running.items) await api(server, `/v1/jobs/${id}/cancel`, {}).catch(() => {});
  await server.stop();
}

async function acceptAndQueue(): Promise<void> {
  const rounds = Math.max(1, Math.round(POST_ROUNDS));
  console.log(`\n2. POST /v1/jobs accepted/s, autocannon, 32 connections, ${rounds} alternating rounds of 2 s per server`);
  const bare = await startServer(['--input-type=module', '-e', BARE_FASTIFY], {}, '/healthz');
  const noop = await startServer(['--import', 'tsx', '--input-type=module', '-e', EXECD_NOOP], {}, '/healthz');
  const holdEnv = { EXECD_QUEUES: 'hold:1', EXECD_QUEUE_CAPACITY: '10000000' };
  const execd = await startExecd(holdEnv);
  const entryB = process.env.EXECD_BENCH_ENTRY_B;
  const execdB = entryB ? await startServer([entryB], { EXECD_TOKEN: TOKEN, EXECD_LOG_LEVEL: 'warn', ...holdEnv }, '/healthz') : null;
  try {
    await api(execd, '/v1/jobs', { argv: ['sleep', '3600'], queue: 'hold' }); // the blocker: everything after it stays queued
    if (execdB) await api(execdB, '/v1/jobs', { argv: ['sleep', '3600'], queue: 'hold' });
    await new Promise((r) => setTimeout(r, 500));
    const rssBefore = rssBytes(execd.child.pid!);
    const heapBefore = (await api<{ memory: { heapUsedBytes: number } }>(execd, '/v1/info')).memory.heapUsedBytes;
    const peers: Peer[] = [
      { name: 'bare Fastify 202', server: bare, path: '/v1/jobs' },
      { name: 'execd no-op route', server: noop, path: '/noop/jobs' },
      { name: 'execd POST /v1/jobs', server: execd, path: '/v1/jobs' },
      ...(execdB ? [{ name: 'execd B /v1/jobs', server: execdB, path: '/v1/jobs' }] : []),
    ];
    for (const p of peers) await cannon(p.server.url + p.path, 1); // warm-up
    const results = await compareRounds(peers, rounds, 2);
    for (const r of results) {
      console.log(`   ${r.name.padEnd(20)} ${r.rate.toFixed(0).padStart(6)} req/s  ${(r.ratio * 100).toFixed(1).padStart(5)} % of bare  server CPU ${r.cpu.toFixed(1)} µs/request  (rounds ${r.rounds.map((x) => x.toFixed(0)).join(', ')})`);
    }
    if (execdB) {
      const [a, b] = [results[2]!, results[3]!];
      const perRound = median(b.cpus.map((x, i) => x / a.cpus[i]!));
      console.log(`   B (${entryB}) / A server CPU per request: median of per-round ratios ${perRound.toFixed(3)}`);
    }
    console.log('   target: POST /v1/jobs ≥ 70 % of bare Fastify (median of per-round ratios); the no-op line is the floor set by the shared /v1 plumbing (auth, rate limit, audit line, logging, hooks)');
    await bare.stop();
    await noop.stop();
    if (execdB) await stopHeld(execdB);

    console.log(`\n3. RSS with ${QUEUED} jobs queued`);
    const have = (await queueInfo(execd, 'hold')).queued;
    if (have < QUEUED) await cannon(`${execd.url}/v1/jobs`, 0, QUEUED - have);
    const q = await queueInfo(execd, 'hold');
    await new Promise((r) => setTimeout(r, 1000));
    const rssAfter = rssBytes(execd.child.pid!);
    const heapAfter = (await api<{ memory: { heapUsedBytes: number } }>(execd, '/v1/info')).memory.heapUsedBytes;
    const per = (rssAfter - rssBefore) / q.queued;
    console.log(`   queued ${q.queued}, running ${q.running}`);
    console.log(`   RSS ${(rssBefore / 2 ** 20).toFixed(1)} MiB -> ${(rssAfter / 2 ** 20).toFixed(1)} MiB: ${(per / 1024).toFixed(2)} KiB per queued job (target ≤ 2 KiB)`);
    console.log(`   V8 heap used ${(heapBefore / 2 ** 20).toFixed(1)} MiB -> ${(heapAfter / 2 ** 20).toFixed(1)} MiB: ${((heapAfter - heapBefore) / q.queued / 1024).toFixed(2)} KiB per queued job`);
  } finally {
    await stopHeld(execd);
    for (const s of [bare, noop, ...(execdB ? [execdB] : [])]) if (s.child.exitCode === null && s.child.signalCode === null) await s.stop();
  }
}

console.log(`bench/jobs.ts: node ${process.version}, execd log level warn, every server in its own process`);
if (JOBS > 0) await endToEnd();
await acceptAndQueue();
