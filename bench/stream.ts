/**
 * WebSocket viewers benchmark (figures printed, not asserted), each against a
 * peer measured on the same machine in the same run:
 *  1. One viewer of GET /v1/jobs/{id}/stream receiving SIZE MiB of output, from
 *     job submission to its exit frame, against a plain Node process reading
 *     the same command's stdout: `head -c SIZE /dev/zero` with encoding=base64,
 *     `yes | head -c SIZE` (text, a newline every other byte) and log-like
 *     lines with encoding=utf8. Target ≥ 50 %. The figure is goodput: a
 *     viewer slower than the job skips bytes (gap frames), by design.
 *  2. Five viewers reading at 10 KB/s while a job writes BIG MiB: server RSS
 *     growth ≤ 64 MiB, and the job takes ≤ 1.5× its time with no viewer.
 *
 *   npx tsx bench/stream.ts [sizeMiB=512] [bigMiB=1024] [rounds=1]   (a size of 0 skips that part)
 * EXECD_SPAWNER=child_process|native (default auto) picks execd's spawner.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { WebSocket } from 'ws';
import { postJson, rssBytes, startExecd, TOKEN } from './lib.js';

const [SIZE_MIB = 512, BIG_MIB = 1024, ROUNDS = 1] = process.argv.slice(2).map(Number);
const MiB = 1024 * 1024;
const AUTH = { authorization: `Bearer ${TOKEN}` };

const execd = await startExecd({
  EXECD_QUEUES: 'default:2',
  EXECD_MAX_OUTPUT_BYTES: String(4 * 1024 * MiB),
  EXECD_SPAWNER: process.env.EXECD_SPAWNER ?? 'auto',
});
const wsBase = execd.url.replace(/^http/, 'ws');
const serverPid = execd.child.pid!;

/** The plain peer: spawn the command and count its stdout bytes. */
async function plainRead(command: string): Promise<{ ms: number; bytes: number; cpu: number }> {
  const cpu0 = ownCpuSeconds();
  const t0 = performance.now();
  const child = spawn('/bin/sh', ['-c', command], { stdio: ['ignore', 'pipe', 'inherit'] });
  let bytes = 0;
  child.stdout.on('data', (c: Buffer) => (bytes += c.length));
  await once(child, 'close');
  return { ms: performance.now() - t0, bytes, cpu: ownCpuSeconds() - cpu0 };
}

async function submit(command: string): Promise<string> {
  const res = await postJson(`${execd.url}/v1/jobs`, { command });
  if (res.status !== 202) throw new Error(`POST /v1/jobs answered ${res.status}: ${res.body}`);
  return (JSON.parse(res.body) as { id: string }).id;
}

async function jobAfter(id: string): Promise<{ state: string; result: { durationMs: number } | null }> {
  for (;;) {
    const res = await fetch(`${execd.url}/v1/jobs/${id}?waitMs=60000`, { headers: AUTH });
    const job = (await res.json()) as { state: string; result: { durationMs: number } | null };
    if (!['queued', 'running'].includes(job.state)) return job;
  }
}

/** CPU seconds (user + system) a process has used so far. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}
const ownCpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

/** Forget a finished job and its output file (so its pages do not weigh on the next run). */
const remove = (id: string) => fetch(`${execd.url}/v1/jobs/${id}`, { method: 'DELETE', headers: AUTH }).then((r) => r.arrayBuffer());

const base64Bytes = (s: string) => (s.length / 4) * 3 - (s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0);

interface Viewed {
  bytes: number;
  /** Bytes read from the socket (frames, whole or not). */
  socketBytes(): number;
  gapBytes: number;
  gaps: number;
  exit: boolean;
  ws: WebSocket;
  closed: Promise<unknown>;
}

/** A viewer that parses every frame as a client would; `bytesPerSecond` paces its socket reads. */
function view(id: string, encoding: 'utf8' | 'base64', bytesPerSecond?: number): Viewed {
  const ws = new WebSocket(`${wsBase}/v1/jobs/${id}/stream?encoding=${encoding}`, { headers: AUTH, perMessageDeflate: false });
  const v: Viewed = {
    bytes: 0,
    socketBytes: () => (ws as unknown as { _socket: import('node:net').Socket | null })._socket?.bytesRead ?? 0,
    gapBytes: 0,
    gaps: 0,
    exit: false,
    ws,
    closed: once(ws, 'close'),
  };
  ws.on('message', (data) => {
    const f = JSON.parse(String(data)) as { type: string; data?: string; encoding?: string; from?: number; to?: number };
    if (f.type === 'output') v.bytes += f.encoding === 'base64' ? base64Bytes(f.data!) : Buffer.byteLength(f.data!);
    else if (f.type === 'gap') {
      v.gaps++;
      v.gapBytes += f.to! - f.from!;
    } else if (f.type === 'exit') v.exit = true;
  });
  if (bytesPerSecond !== undefined) {
    ws.once('open', () => {
      const socket = (ws as unknown as { _socket: import('node:net').Socket })._socket;
      // After each chunk the socket rests as long as that chunk takes at the given rate.
      socket.on('data', (chunk: Buffer) => {
        socket.pause();
        setTimeout(() => socket.resume(), (chunk.length / bytesPerSecond) * 1000).unref();
      });
    });
  }
  ws.on('error', () => {});
  return v;
}

interface ViaExecd {
  ms: number;
  bytes: number;
  gaps: number;
  jobMs: number;
  serverCpu: number;
  clientCpu: number;
}

async function viaExecd(command: string, encoding: 'utf8' | 'base64'): Promise<ViaExecd> {
  const cpu0 = cpuSeconds(serverPid);
  const own0 = ownCpuSeconds();
  const t0 = performance.now();
  const id = await submit(command);
  const v = view(id, encoding);
  await v.closed;
  const ms = performance.now() - t0;
  const serverCpu = cpuSeconds(serverPid) - cpu0;
  const clientCpu = ownCpuSeconds() - own0;
  if (!v.exit) throw new Error('the viewer closed before the exit frame');
  const job = await jobAfter(id);
  await remove(id);
  return { ms, bytes: v.bytes, gaps: v.gapBytes, jobMs: job.result?.durationMs ?? NaN, serverCpu, clientCpu };
}

/** The same job with nobody watching: its time and the server's CPU. */
async function alone(command: string): Promise<{ jobMs: number; serverCpu: number }> {
  const cpu0 = cpuSeconds(serverPid);
  const id = await submit(command);
  const job = await jobAfter(id);
  const serverCpu = cpuSeconds(serverPid) - cpu0;
  await remove(id);
  return { jobMs: job.result!.durationMs, serverCpu };
}

const mibps = (bytes: number, ms: number) => `${(bytes / MiB / (ms / 1000)).toFixed(0).padStart(5)} MiB/s`;

console.log(`bench/stream.ts: ${SIZE_MIB} MiB to one viewer, ${BIG_MIB} MiB with five slow viewers; spawner ${process.env.EXECD_SPAWNER ?? 'auto'}`);
const size = SIZE_MIB * MiB;
const cases: Array<[string, string, 'utf8' | 'base64']> = [
  ['zeros, base64', `head -c ${size} /dev/zero`, 'base64'],
  ['text (yes), utf8', `yes | head -c ${size}`, 'utf8'],
  // A log-like text: one escaped character (the newline) per ~100 bytes instead of every other byte.
  ['text (log lines), utf8', `yes '2024-05-01T12:00:00.000Z INFO worker-3 request completed status=200 durationMs=12 path=/v1/jobs' | head -c ${size}`, 'utf8'],
];
for (const [name, command, encoding] of SIZE_MIB > 0 ? cases : []) {
  let best = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const plain = await plainRead(command);
    const quiet = await alone(command);
    const viewed = await viaExecd(command, encoding);
    if (plain.bytes !== size || viewed.bytes + viewed.gaps !== size) throw new Error(`byte counts: plain ${plain.bytes}, viewer ${viewed.bytes} + gaps ${viewed.gaps}`);
    // Goodput: the bytes the viewer got (a viewer slower than the job skips some, by design) per second, from submission to the exit frame.
    const ratio = viewed.bytes / viewed.ms / (size / plain.ms);
    best = Math.max(best, ratio);
    console.log(`${name}  round ${round + 1}`);
    console.log(`  plain node reading stdout   ${(plain.ms / 1000).toFixed(2)} s  ${mibps(size, plain.ms)}  (reader CPU ${plain.cpu.toFixed(2)} s)`);
    console.log(`  execd job, no viewer        ${(quiet.jobMs / 1000).toFixed(2)} s  ${mibps(size, quiet.jobMs)}  (server CPU ${quiet.serverCpu.toFixed(2)} s)`);
    console.log(
      `  execd job -> one viewer     ${(viewed.ms / 1000).toFixed(2)} s  ${mibps(viewed.bytes, viewed.ms)} received, ${((viewed.gaps / size) * 100).toFixed(1)} % skipped in gaps ` +
        `(job ${(viewed.jobMs / 1000).toFixed(2)} s; server CPU ${viewed.serverCpu.toFixed(2)} s, viewer client CPU ${viewed.clientCpu.toFixed(2)} s): ${(ratio * 100).toFixed(1)} %`,
    );
  }
  console.log(`  best ratio ${(best * 100).toFixed(1)} % of plain (target ≥ 50 %)`);
}

// 2. Five viewers at 10 KB/s while a job writes BIG MiB, against the same job alone (rounds interleaved).
if (BIG_MIB === 0) {
  await execd.stop();
  process.exit(0);
}
const big = `head -c ${BIG_MIB * MiB} /dev/zero`;
console.log(`${BIG_MIB} MiB job, five viewers at 10 KB/s`);
let bestAlone = Infinity;
let bestViewed = Infinity;
let worstGrowth = 0;
for (let round = 0; round < ROUNDS; round++) {
  const quiet = await alone(big);
  const rss0 = rssBytes(serverPid);
  let peak = rss0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(serverPid))), 25);
  const id = await submit(big);
  const viewers = Array.from({ length: 5 }, () => view(id, 'base64', 10_000));
  const job = await jobAfter(id);
  clearInterval(sampler);
  peak = Math.max(peak, rssBytes(serverPid));
  const slowest = viewers.reduce((a, v) => Math.min(a, v.socketBytes()), Infinity);
  for (const v of viewers) v.ws.terminate();
  await remove(id);
  const ms = job.result!.durationMs;
  bestAlone = Math.min(bestAlone, quiet.jobMs);
  bestViewed = Math.min(bestViewed, ms);
  worstGrowth = Math.max(worstGrowth, peak - rss0);
  console.log(
    `  round ${round + 1}: alone ${(quiet.jobMs / 1000).toFixed(2)} s, with the viewers ${(ms / 1000).toFixed(2)} s; ` +
      `server RSS ${(rss0 / MiB).toFixed(0)} MiB before, peak ${(peak / MiB).toFixed(0)} MiB (+${((peak - rss0) / MiB).toFixed(1)}); ` +
      `each viewer read ≥ ${(slowest / 1024).toFixed(0)} KiB meanwhile`,
  );
}
console.log(`  job time ${(bestViewed / bestAlone).toFixed(2)}× its time alone (best of each; target ≤ 1.5×); RSS growth ≤ ${(worstGrowth / MiB).toFixed(1)} MiB (target ≤ 64 MiB)`);
await execd.stop();
