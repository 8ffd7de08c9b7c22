/**
 * WebSocket viewers against websocketd (the Debian package `websocketd`, which serves one command's
 * stdout to each WebSocket client), measured in the same run, interleaved, median of ROUNDS, with exact
 * byte counts checked on both sides (a fast wrong answer is a failure, and the run stops):
 *  1. zeros: `head -c SIZE /dev/zero` (512 MiB), one viewer, execd encoding=binary against
 *     `websocketd --binary`: MiB/s from submission (execd) or connection (websocketd) to the close,
 *     exactly SIZE bytes, zero gap frames. Target ≥ 1.2×.
 *  2. seq: `seq 1 LINES` (5,000,000 lines, 38,888,896 bytes), one viewer, execd encoding=utf8 against
 *     websocketd's text mode (one message per line): lines/s. Target ≥ 20×.
 *  3. replay: a finished SIZE job read by one viewer (encoding=binary) against `websocketd --binary`
 *     serving `cat` of a file of the same bytes (in the page cache, as the job's spill file is). Target ≥ 1.0×.
 *  4. slow: five viewers reading at 10 KB/s while a job writes BIG (1 GiB): server RSS growth ≤ 64 MiB,
 *     and the job takes ≤ 1.5× its time alone (medians). The viewers get every byte they read (lag=wait),
 *     and are cut when the job has ended.
 *
 *   npx tsx bench/stream.ts [--rounds 3] [--size-mib 512] [--lines 5000000] [--big-mib 1024] [--only zeros,seq,replay,slow]
 * EXECD_SPAWNER=child_process|native (default auto) picks execd's spawner; EXECD_BENCH_ENTRY (bench/lib.ts)
 * runs an already built dist/main.js.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { freePort, postJson, rssBytes, startExecd, TOKEN } from './lib.js';

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'size-mib': { type: 'string', default: '512' },
    lines: { type: 'string', default: '5000000' },
    'big-mib': { type: 'string', default: '1024' },
    only: { type: 'string', default: 'zeros,seq,replay,slow' },
  },
});
const ROUNDS = Number(opts.rounds);
const MiB = 1024 * 1024;
const SIZE = Number(opts['size-mib']) * MiB;
const LINES = Number(opts.lines);
const BIG = Number(opts['big-mib']) * MiB;
const ONLY = new Set(opts.only.split(','));
const AUTH = { authorization: `Bearer ${TOKEN}` };
const WEBSOCKETD = process.env.WEBSOCKETD ?? '/usr/bin/websocketd';

const execd = await startExecd({
  EXECD_QUEUES: 'default:2',
  EXECD_MAX_OUTPUT_BYTES: String(4 * 1024 * MiB),
  EXECD_SPAWNER: process.env.EXECD_SPAWNER ?? 'auto',
});
const wsBase = execd.url.replace(/^http/, 'ws');
const serverPid = execd.child.pid!;
const work = mkdtempSync(join(tmpdir(), 'execd-bench-stream-'));

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

/** Forget a finished job and its output file (so its pages do not weigh on the next run). */
const remove = (id: string) => fetch(`${execd.url}/v1/jobs/${id}`, { method: 'DELETE', headers: AUTH }).then((r) => r.arrayBuffer());

/** What one viewer received: output bytes, newlines, frames, gap frames; offsets are checked as they come. */
interface Received {
  bytes: number;
  lines: number;
  frames: number;
  gaps: number;
  exit: boolean;
}

const countLines = (b: Buffer) => {
  let n = 0;
  for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
  return n;
};

/**
 * One execd viewer: every frame parsed as a client would (binary header, or JSON). Offsets must be
 * contiguous per stream. `bytesPerSecond` paces its socket reads; `onOpen` runs when it is open.
 */
function viewExecd(id: string, encoding: 'binary' | 'utf8', bytesPerSecond?: number): { ws: WebSocket; done: Promise<Received> } {
  const ws = new WebSocket(`${wsBase}/v1/jobs/${id}/stream?encoding=${encoding}`, { headers: AUTH, perMessageDeflate: false });
  const r: Received = { bytes: 0, lines: 0, frames: 0, gaps: 0, exit: false };
  const next = { stdout: 0, stderr: 0 };
  let error: Error | null = null;
  const check = (stream: 'stdout' | 'stderr', offset: number, n: number) => {
    if (offset !== next[stream]) error ??= new Error(`${stream} frame at ${offset}, expected ${next[stream]}`);
    next[stream] = offset + n;
  };
  ws.on('message', (data: Buffer, isBinary) => {
    r.frames++;
    if (isBinary) {
      const n = data.length - 9;
      check(data[0] === 1 ? 'stdout' : 'stderr', data.readUIntBE(1 + 2, 6) + data.readUInt16BE(1) * 2 ** 48, n);
      r.bytes += n;
      if (bytesPerSecond === undefined) r.lines += countLines(data.subarray(9));
      return;
    }
    const f = JSON.parse(data.toString()) as { type: string; stream: 'stdout' | 'stderr'; offset: number; data: string };
    if (f.type === 'output') {
      const n = Buffer.byteLength(f.data);
      check(f.stream, f.offset, n);
      r.bytes += n;
      let k = 0;
      for (let i = f.data.indexOf('\n'); i !== -1; i = f.data.indexOf('\n', i + 1)) k++;
      r.lines += k;
    } else if (f.type === 'gap') r.gaps++;
    else if (f.type === 'exit') r.exit = true;
  });
  if (bytesPerSecond !== undefined) pace(ws, bytesPerSecond);
  ws.on('error', () => {});
  const done = once(ws, 'close').then(() => {
    if (error) throw error;
    return r;
  });
  return { ws, done };
}

/** Read the socket at `bytesPerSecond`: after each chunk it rests as long as that chunk takes at that rate. */
function pace(ws: WebSocket, bytesPerSecond: number): void {
  ws.once('open', () => {
    const socket = (ws as unknown as { _socket: import('node:net').Socket })._socket;
    socket.on('data', (chunk: Buffer) => {
      socket.pause();
      setTimeout(() => socket.resume(), (chunk.length / bytesPerSecond) * 1000).unref();
    });
  });
}

/** websocketd serving `argv` on a free loopback port (one process of it per client). */
async function startWebsocketd(argv: string[], binary: boolean): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(WEBSOCKETD, [`--port=${port}`, '--address=127.0.0.1', `--binary=${binary}`, '--loglevel=error', ...argv], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  for (let i = 0; ; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const s = netConnect(port, '127.0.0.1', () => (s.end(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (i > 200 || child.exitCode !== null) throw new Error(`websocketd did not start (${WEBSOCKETD})`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    url: `ws://127.0.0.1:${port}/`,
    child,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

/** One websocketd client: binary messages are bytes; text messages are lines (websocketd strips the newline). */
async function viaWebsocketd(url: string): Promise<{ ms: number } & Received> {
  const t0 = performance.now();
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const r: Received = { bytes: 0, lines: 0, frames: 0, gaps: 0, exit: true };
  ws.on('message', (data: Buffer, isBinary) => {
    r.frames++;
    if (isBinary) {
      r.bytes += data.length;
    } else {
      r.bytes += data.length + 1;
      r.lines++;
    }
  });
  ws.on('error', () => {});
  await once(ws, 'close');
  return { ms: performance.now() - t0, ...r };
}

/** A job to one execd viewer, from its submission to the close after its exit frame. */
async function viaExecd(command: string, encoding: 'binary' | 'utf8'): Promise<{ ms: number } & Received> {
  const t0 = performance.now();
  const id = await submit(command);
  const r = await viewExecd(id, encoding).done;
  const ms = performance.now() - t0;
  await remove(id);
  return { ms, ...r };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const mibps = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);
const expectExact = (who: string, got: Received, bytes: number, lines?: number) => {
  if (got.bytes !== bytes || got.gaps !== 0 || (lines !== undefined && got.lines !== lines) || !got.exit) {
    throw new Error(`${who}: ${got.bytes} bytes (want ${bytes}), ${got.lines} lines${lines === undefined ? '' : ` (want ${lines})`}, ${got.gaps} gaps, exit ${got.exit}`);
  }
};

interface Verdict {
  name: string;
  figure: string;
  pass: boolean;
}
const verdicts: Verdict[] = [];

/** Rounds of execd and websocketd, alternating which goes first. */
async function compare(
  name: string,
  execdRun: () => Promise<{ ms: number } & Received>,
  peerRun: () => Promise<{ ms: number } & Received>,
  exact: { bytes: number; lines?: number },
  rate: (r: { ms: number } & Received) => number,
  unit: string,
  target: number,
): Promise<void> {
  console.log(`${name}`);
  const mine: number[] = [];
  const theirs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['execd', 'websocketd'] as const) : (['websocketd', 'execd'] as const);
    for (const who of order) {
      const r = who === 'execd' ? await execdRun() : await peerRun();
      expectExact(who, r, exact.bytes, exact.lines);
      (who === 'execd' ? mine : theirs).push(rate(r));
      console.log(
        `  round ${round + 1} ${who.padEnd(10)} ${(r.ms / 1000).toFixed(2).padStart(6)} s  ${rate(r).toFixed(0).padStart(9)} ${unit}` +
          `  (${r.bytes} bytes, ${r.lines} lines, ${r.frames} frames, ${r.gaps} gaps)`,
      );
    }
  }
  const ratio = median(mine) / median(theirs);
  verdicts.push({ name, figure: `${ratio.toFixed(2)}× websocketd (target ≥ ${target}×)`, pass: ratio >= target });
  console.log(`  median execd ${median(mine).toFixed(0)} ${unit}, websocketd ${median(theirs).toFixed(0)} ${unit}: ${ratio.toFixed(2)}× (target ≥ ${target}×)`);
}

console.log(
  `bench/stream.ts: ${ROUNDS} rounds; ${SIZE / MiB} MiB, seq 1 ${LINES}, ${BIG / MiB} MiB with five viewers at 10 KB/s; ` +
    `spawner ${process.env.EXECD_SPAWNER ?? 'auto'}; ${WEBSOCKETD}`,
);

try {
  if (ONLY.has('zeros')) {
    const command = `head -c ${SIZE} /dev/zero`;
    const peer = await startWebsocketd(['head', '-c', String(SIZE), '/dev/zero'], true);
    try {
      await compare(`1. ${SIZE / MiB} MiB of /dev/zero, one viewer, execd encoding=binary vs websocketd --binary`,
        () => viaExecd(command, 'binary'), () => viaWebsocketd(peer.url), { bytes: SIZE }, (r) => mibps(r.bytes, r.ms), 'MiB/s', 1.2);
    } finally {
      await peer.stop();
    }
  }

  if (ONLY.has('seq')) {
    const bytes = seqBytes(LINES);
    const peer = await startWebsocketd(['seq', '1', String(LINES)], false);
    try {
      await compare(`2. seq 1 ${LINES}, one viewer, execd encoding=utf8 vs websocketd text mode`,
        () => viaExecd(`seq 1 ${LINES}`, 'utf8'), () => viaWebsocketd(peer.url), { bytes, lines: LINES }, (r) => r.lines / (r.ms / 1000), 'lines/s', 20);
    } finally {
      await peer.stop();
    }
  }

  if (ONLY.has('replay')) {
    const id = await submit(`head -c ${SIZE} /dev/zero`);
    await jobAfter(id);
    const file = join(work, 'zeros');
    await new Promise<void>((resolve, reject) => {
      const c = spawn('/bin/sh', ['-c', `head -c ${SIZE} /dev/zero > '${file}'`], { stdio: 'inherit' });
      c.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writing ${file} failed`))));
    });
    const peer = await startWebsocketd(['cat', file], true);
    try {
      await compare(`3. replay of a finished ${SIZE / MiB} MiB job, one viewer, execd encoding=binary vs websocketd --binary cat of the same bytes`,
        async () => {
          const t0 = performance.now();
          const r = await viewExecd(id, 'binary').done;
          return { ms: performance.now() - t0, ...r };
        },
        () => viaWebsocketd(peer.url), { bytes: SIZE }, (r) => mibps(r.bytes, r.ms), 'MiB/s', 1.0);
    } finally {
      await peer.stop();
      await remove(id);
      rmSync(file, { force: true });
    }
  }

  if (ONLY.has('slow')) {
    const big = `head -c ${BIG} /dev/zero`;
    console.log(`4. ${BIG / MiB} MiB job, five viewers reading at 10 KB/s (encoding=binary), against the same job alone`);
    const alone: number[] = [];
    const viewed: number[] = [];
    let worstGrowth = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const quietId = await submit(big);
      const quiet = await jobAfter(quietId);
      await remove(quietId);
      alone.push(quiet.result!.durationMs);
      const rss0 = rssBytes(serverPid);
      let peak = rss0;
      const sampler = setInterval(() => (peak = Math.max(peak, rssBytes(serverPid))), 25);
      const id = await submit(big);
      const viewers = Array.from({ length: 5 }, () => viewExecd(id, 'binary', 10_000));
      const job = await jobAfter(id);
      clearInterval(sampler);
      peak = Math.max(peak, rssBytes(serverPid));
      const readBytes = viewers.map((v) => (v.ws as unknown as { _socket: import('node:net').Socket | null })._socket?.bytesRead ?? 0);
      for (const v of viewers) v.ws.terminate();
      await Promise.allSettled(viewers.map((v) => v.done));
      await remove(id);
      viewed.push(job.result!.durationMs);
      worstGrowth = Math.max(worstGrowth, peak - rss0);
      console.log(
        `  round ${round + 1}: alone ${(quiet.result!.durationMs / 1000).toFixed(2)} s, with the viewers ${(job.result!.durationMs / 1000).toFixed(2)} s; ` +
          `server RSS ${(rss0 / MiB).toFixed(0)} MiB before, peak ${(peak / MiB).toFixed(0)} MiB (+${((peak - rss0) / MiB).toFixed(1)}); ` +
          `the viewers read ${Math.min(...readBytes)}–${Math.max(...readBytes)} bytes meanwhile`,
      );
    }
    const ratio = median(viewed) / median(alone);
    console.log(`  job time ${ratio.toFixed(2)}× its time alone (medians; target ≤ 1.5×); RSS growth ≤ ${(worstGrowth / MiB).toFixed(1)} MiB (target ≤ 64 MiB)`);
    verdicts.push({ name: '4. job time with five slow viewers', figure: `${ratio.toFixed(2)}× its time alone (target ≤ 1.5×)`, pass: ratio <= 1.5 });
    verdicts.push({ name: '4. server RSS growth', figure: `${(worstGrowth / MiB).toFixed(1)} MiB (target ≤ 64 MiB)`, pass: worstGrowth <= 64 * MiB });
  }
} finally {
  await execd.stop();
  rmSync(work, { recursive: true, force: true });
}

console.log('\nsummary');
for (const v of verdicts) console.log(`  ${v.pass ? 'PASS' : 'FAIL'}  ${v.name}: ${v.figure}`);

/** The byte length of `seq 1 n`. */
function seqBytes(n: number): number {
  let total = 0;
  for (let digits = 1, lo = 1; lo <= n; digits++, lo *= 10) total += (Math.min(n, lo * 10 - 1) - lo + 1) * (digits + 1);
  return total;
}
