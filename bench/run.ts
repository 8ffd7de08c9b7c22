/**
 * POST /v1/run {"argv":["/bin/true"]} against adnanh/webhook running /bin/true and a raw in-process
 * child_process.spawn loop of /bin/true, at 1 and 8 connections, same machine, same run, rounds interleaved.
 * Besides the rates it prints each server's CPU per run, from /proc: utime+stime of the server process
 * (and, for execd, of its spawn helpers), without the commands' own CPU (that is the children's, and the
 * same for both). CPU per run moves much less than the rates when the machine is shared.
 * Every server first serves `warm-up` requests at 8 connections, and the rounds measure it after them: V8
 * optimizes a function after ~3,000 calls (and 500 more after its last type feedback change), so execd's
 * first few thousand runs cost up to twice its CPU per run (webhook, compiled ahead of time, costs the same
 * from its first run). The warm-up's own CPU per run is printed too: what a server costs just after its start.
 * Targets: issue "Foundation": ≥ 85 % of the raw rate at 8, p50 within 1 ms of raw;
 * issue 22: execd's CPU per run ≤ webhook's, and ≥ 1.15× webhook's rate at 8 connections.
 *   npx tsx bench/run.ts [seconds-per-measurement=5] [rounds=3] [warm-up=10000]
 * (BENCH_NODE_PEER=1 adds a third server: a bare node:http server spawning with child_process, the floor of Node.)
 * (webhook: the Debian package `webhook`; without it its lines are left out.)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedLoop, freePort, getJson, postJson, rawSpawnTrue, startExecdReady, type LoopResult } from './lib.js';

const seconds = Number(process.argv[2] ?? 5);
const rounds = Number(process.argv[3] ?? 3);
const warmUp = Number(process.argv[4] ?? 10_000);
const CONNS = [1, 8] as const;
const body = { argv: ['/bin/true'] };

/** utime+stime of a process in µs (USER_HZ = 100); 0 once it is gone. */
function cpuMicros(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10_000;
  } catch {
    return 0;
  }
}

/** The long-lived children of `pid` (execd's spawn helpers), with their names. */
function children(pid: number): Array<{ pid: number; name: string }> {
  const out: Array<{ pid: number; name: string }> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push({ pid: Number(entry), name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

interface Target {
  name: string;
  /** Its line in the results. */
  label: string;
  url: string;
  body: unknown;
  /** The processes whose CPU is the server's: the server and its long-lived helpers. */
  pids(): number[];
  stop(): Promise<void>;
}

function webhookBin(): string | null {
  return spawnSync('sh', ['-c', 'command -v webhook'], { encoding: 'utf8' }).stdout.trim() || null;
}

async function startWebhook(bin: string, dir: string): Promise<Target> {
  const hooks = join(dir, 'hooks.json');
  // include-command-output-in-response: the answer comes after the command ends, as POST /v1/run's does.
  writeFileSync(hooks, JSON.stringify([{ id: 'true', 'execute-command': '/bin/true', 'include-command-output-in-response': true }]));
  const port = await freePort();
  const child: ChildProcess = spawn(bin, ['-hooks', hooks, '-ip', '127.0.0.1', '-port', String(port)], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}/hooks/true`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`webhook exited with ${child.exitCode}`);
    if ((await postJson(url, {}).catch(() => null))?.status === 200) break;
    if (i > 200) throw new Error('webhook did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name: 'webhook',
    label: 'webhook POST /hooks/true',
    url,
    body: {},
    pids: () => [child.pid!],
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

/**
 * With BENCH_NODE_PEER=1: the floor of a server written plainly in Node, a bare node:http server that runs each POST's
 * argv with child_process.spawn (pipes, an empty environment) and answers its exit code and stdout as JSON.
 */
const NODE_PEER = `
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const { argv } = JSON.parse(Buffer.concat(chunks));
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: {} });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.resume();
    child.on('close', (exitCode) => {
      const json = JSON.stringify({ exitCode, stdout });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json);
    });
  });
}).listen(Number(process.env.PORT), '127.0.0.1');
`;

async function startNodePeer(): Promise<Target> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--input-type=module', '-e', NODE_PEER], { env: { PATH: process.env.PATH!, PORT: String(port) }, stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}/`;
  for (let i = 0; (await postJson(url, body).catch(() => null))?.status !== 200; i++) {
    if (child.exitCode !== null || i > 200) throw new Error('the bare node:http peer did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    name: 'bare node:http',
    label: 'bare node:http + child_process',
    url,
    body,
    pids: () => [child.pid!],
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

async function startExecdTarget(): Promise<Target> {
  // Default settings, logging at info (an audit line per run) to /dev/null, as webhook logs its lines at its default level.
  const env: Record<string, string> = { EXECD_LOG_LEVEL: 'info' };
  if (process.env.EXECD_SPAWNER) env.EXECD_SPAWNER = process.env.EXECD_SPAWNER;
  if (process.env.BENCH_NODE_OPTIONS) env.NODE_OPTIONS = process.env.BENCH_NODE_OPTIONS; // V8 flags to compare
  const execd = await startExecdReady(env);
  const check = await postJson(`${execd.url}/v1/run`, body);
  if (check.status !== 200) throw new Error(`execd answered ${check.status}: ${check.body}`);
  const info = JSON.parse((await getJson(`${execd.url}/v1/info`)).body) as { spawner: string };
  const pid = execd.child.pid!;
  const helpers = children(pid).map((c) => c.pid); // the spawn helpers, started with the server
  const name = `execd [${info.spawner}]`;
  return { name, label: `${name} POST /v1/run`, url: `${execd.url}/v1/run`, body, pids: () => [pid, ...helpers], stop: () => execd.stop() };
}

interface Sample extends LoopResult {
  cpuUs: number;
}

async function measure(t: Target, c: number): Promise<Sample> {
  const op = async () => {
    const r = await postJson(t.url, t.body);
    if (r.status !== 200) throw new Error(`${t.name}: status ${r.status} ${r.body}`);
  };
  await closedLoop(c, 500, op); // warm-up
  const cpu0 = t.pids().reduce((s, p) => s + cpuMicros(p), 0);
  const r = await closedLoop(c, seconds * 1000, op);
  const cpu1 = t.pids().reduce((s, p) => s + cpuMicros(p), 0);
  return { ...r, cpuUs: (cpu1 - cpu0) / r.ops };
}

/** `n` requests at 8 connections; the server's CPU per request over them. */
async function warm(t: Target, n: number): Promise<number> {
  let left = n;
  const cpu0 = t.pids().reduce((s, p) => s + cpuMicros(p), 0);
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (left-- > 0) {
      const r = await postJson(t.url, t.body);
      if (r.status !== 200) throw new Error(`${t.name}: status ${r.status} ${r.body}`);
    }
  }));
  return (t.pids().reduce((s, p) => s + cpuMicros(p), 0) - cpu0) / n;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};

const dir = mkdtempSync(join(tmpdir(), 'execd-bench-run-'));
const bin = webhookBin();
const targets: Target[] = [];
const samples = new Map<string, Sample[]>();
const add = (key: string, s: Sample) => samples.set(key, [...(samples.get(key) ?? []), s]);
const med = (key: string, f: (s: Sample) => number) => median((samples.get(key) ?? []).map(f));
try {
  if (bin) targets.push(await startWebhook(bin, dir));
  else console.log('webhook is not installed (Debian package `webhook`): its lines are left out');
  const execd = await startExecdTarget();
  targets.push(execd);
  if (process.env.BENCH_NODE_PEER === '1') targets.push(await startNodePeer());
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  console.log(`bench/run.ts: node ${process.version}, ${seconds}s per measurement, median of ${rounds} interleaved rounds after ${warmUp} requests of warm-up each, load ${load}, ${new Date().toISOString()}`);
  console.log(`  RSS after start-up and one run: ${targets.map((t) => `${t.name} ${rssMiB(t.pids()[0]!).toFixed(1)} MiB`).join(', ')}`);
  if (warmUp > 0) {
    const during: string[] = [];
    for (const t of targets) during.push(`${t.name} ${(await warm(t, warmUp)).toFixed(0)} µs`);
    console.log(`  warm-up, CPU per run over the first ${warmUp} requests at 8 connections: ${during.join(', ')}`);
  }
  for (let round = 1; round <= rounds; round++) {
    for (const c of CONNS) {
      await closedLoop(c, 300, rawSpawnTrue);
      const raw = await closedLoop(c, seconds * 1000, rawSpawnTrue);
      add(`raw@${c}`, { ...raw, cpuUs: NaN });
      for (const t of targets) add(`${t.name}@${c}`, await measure(t, c));
    }
    process.stdout.write(`  round ${round}/${rounds} done\n`);
  }
  const row = (key: string, label: string) =>
    `  ${label.padEnd(26)}${med(key, (s) => s.rate).toFixed(0).padStart(6)}/s  p50 ${med(key, (s) => s.p50).toFixed(2).padStart(6)} ms  ` +
    `p99 ${med(key, (s) => s.p99).toFixed(2).padStart(6)} ms` +
    (key.startsWith('raw') ? '' : `  server CPU ${med(key, (s) => s.cpuUs).toFixed(0).padStart(4)} µs/run`);
  for (const c of CONNS) {
    console.log(`concurrency ${c}`);
    console.log(row(`raw@${c}`, 'raw child_process.spawn'));
    for (const t of targets) console.log(row(`${t.name}@${c}`, t.label));
    const e = `${execd.name}@${c}`;
    console.log(`  execd/raw ${(med(e, (s) => s.rate) / med(`raw@${c}`, (s) => s.rate) * 100).toFixed(1)} % (target ≥ 85 % at 8); p50 +${(med(e, (s) => s.p50) - med(`raw@${c}`, (s) => s.p50)).toFixed(2)} ms (target ≤ 1 ms)`);
    if (bin) {
      console.log(`  execd/webhook ${(med(e, (s) => s.rate) / med(`webhook@${c}`, (s) => s.rate)).toFixed(2)}× req/s (target ≥ 1.15× at 8); ` +
        `CPU per run ${(med(e, (s) => s.cpuUs) / med(`webhook@${c}`, (s) => s.cpuUs)).toFixed(2)}× webhook's (target ≤ 1)`);
    }
  }
  console.log(`  RSS after the runs: ${targets.map((t) => `${t.name} ${rssMiB(t.pids()[0]!).toFixed(1)} MiB`).join(', ')}`);
  // At rest: execd gives back what the burst grew once it has rested 30 s (services/idle-trim.ts).
  await new Promise((r) => setTimeout(r, 45_000));
  console.log(`  RSS after 45 s at rest: ${targets.map((t) => `${t.name} ${rssMiB(t.pids()[0]!).toFixed(1)} MiB`).join(', ')}`);
} finally {
  await Promise.all(targets.map((t) => t.stop()));
  rmSync(dir, { recursive: true, force: true });
}
