/**
 * Memory at rest (issue 22), default settings (memory backend, EXECD_RETAIN_JOBS=1000, logging at info to /dev/null):
 *  1. RSS and V8 heap after start-up (target RSS ≤ 64 MiB), beside adnanh/webhook's at rest;
 *  2. the same after `jobs` jobs of /bin/true have finished (target ≤ 80 MiB after 60,000), with /proc's
 *     breakdown (anonymous memory: the heap and malloc's; file: the node binary's pages);
 *  3. at each: the CPU the process used at rest and how often its main thread was woken (settle's 15th to 25th s).
 * Figures are read after the server has been idle for `settle` seconds: at rest execd gives back the C heap's free
 * pages at once and collects a grown V8 heap after 30 s of rest (services/idle-trim.ts), so settle for 40.
 *   npx tsx bench/idle.ts [jobs=60000] [settle=40]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, getJson, postJson, startExecdReady } from './lib.js';

const [JOBS = 60_000, SETTLE = 40] = process.argv.slice(2).map(Number);
const MiB = 2 ** 20;

function status(pid: number): { rss: number; anon: number; file: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), anon: kb('RssAnon'), file: kb('RssFile') };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** CPU time of a process's threads in ms (their schedstat: ns), and the wake-ups of its main thread (voluntary context switches). */
function cpuAndWakeUps(pid: number): { cpuMs: number; wakeUps: number } {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
  const wakeUps = Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/task/${pid}/status`, 'utf8'))?.[1] ?? NaN);
  return { cpuMs: ns / 1e6, wakeUps };
}

/**
 * Sleep `SETTLE` seconds, measuring the process at rest over 10 of them (from 15 s: after the idle trim's first look
 * at 5 s, before its collection after 30 s of rest): CPU in ms a second, and wake-ups of its main thread a second.
 */
async function settle(pid: number): Promise<string> {
  const from = Math.min(15_000, (SETTLE * 1000) / 4);
  const window = Math.min(10_000, (SETTLE * 1000) / 2);
  await sleep(from);
  const a = cpuAndWakeUps(pid);
  await sleep(window);
  const b = cpuAndWakeUps(pid);
  await sleep(SETTLE * 1000 - from - window);
  return `at rest ${(((b.cpuMs - a.cpuMs) * 1000) / window).toFixed(2)} ms CPU/s, ${(((b.wakeUps - a.wakeUps) * 1000) / window).toFixed(1)} wake-ups/s`;
}

async function webhookRss(): Promise<{ rss: number; rest: string } | null> {
  const bin = spawnSync('sh', ['-c', 'command -v webhook'], { encoding: 'utf8' }).stdout.trim();
  if (!bin) return null;
  const dir = mkdtempSync(join(tmpdir(), 'execd-bench-idle-'));
  writeFileSync(join(dir, 'hooks.json'), JSON.stringify([{ id: 'true', 'execute-command': '/bin/true', 'include-command-output-in-response': true }]));
  const port = await freePort();
  const child: ChildProcess = spawn(bin, ['-hooks', join(dir, 'hooks.json'), '-ip', '127.0.0.1', '-port', String(port)], { stdio: 'ignore' });
  try {
    for (let i = 0; (await postJson(`http://127.0.0.1:${port}/hooks/true`, {}).catch(() => null))?.status !== 200; i++) {
      if (i > 200) throw new Error('webhook did not start');
      await sleep(50);
    }
    const rest = await settle(child.pid!);
    return { rss: status(child.pid!).rss, rest };
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await once(child, 'exit');
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Info {
  memory: { rssBytes: number; heapUsedBytes: number; heapTotalBytes: number; externalBytes: number };
}

async function report(label: string, url: string, pid: number): Promise<number> {
  const rest = await settle(pid); // before the /v1/info below: a request is work
  const s = status(pid);
  const info = JSON.parse((await getJson(`${url}/v1/info`)).body) as Info;
  const m = info.memory;
  console.log(
    `  ${label.padEnd(34)} RSS ${(s.rss / MiB).toFixed(1).padStart(6)} MiB (anonymous ${(s.anon / MiB).toFixed(1)}, file ${(s.file / MiB).toFixed(1)}); ` +
      `V8 heap used ${(m.heapUsedBytes / MiB).toFixed(1)} of ${(m.heapTotalBytes / MiB).toFixed(1)} MiB, external ${(m.externalBytes / MiB).toFixed(1)} MiB; ${rest}`,
  );
  return s.rss;
}

type Queue = { name: string; queued: number; running: number; processed: number };

console.log(`bench/idle.ts: node ${process.version}, ${JOBS} jobs, figures after ${SETTLE} s idle, ${new Date().toISOString()}`);
const hook = await webhookRss();
if (hook !== null) console.log(`  ${'webhook at rest'.padEnd(34)} RSS ${(hook.rss / MiB).toFixed(1).padStart(6)} MiB; ${hook.rest}`);
const execd = await startExecdReady({
  EXECD_LOG_LEVEL: 'info',
  ...(process.env.EXECD_SPAWNER ? { EXECD_SPAWNER: process.env.EXECD_SPAWNER } : {}),
  // BENCH_NODE_OPTIONS: V8 flags to compare (e.g. --max-semi-space-size=4); the shipped ones are in the Dockerfile and docs/execd.service.
  ...(process.env.BENCH_NODE_OPTIONS ? { NODE_OPTIONS: process.env.BENCH_NODE_OPTIONS } : {}),
  // MALLOC_ARENA_MAX: 2 as npm start runs it, or as given (`unset`: glibc's default), by startExecdReady (lib.ts's mallocEnv).
});
console.log(
  `  execd: ${process.env.EXECD_BENCH_ENTRY ?? 'dist/main.js'}, NODE_OPTIONS=${process.env.BENCH_NODE_OPTIONS ?? ''}` +
    `, MALLOC_ARENA_MAX=${process.env.MALLOC_ARENA_MAX ?? '2'}`,
);
try {
  const pid = execd.child.pid!;
  const rest = await report('execd after start-up', execd.url, pid);
  const queues = async () => JSON.parse((await getJson(`${execd.url}/v1/queues`)).body) as Queue[];
  const queue = (await queues())[0]!;
  const t0 = performance.now();
  let left = JOBS;
  // 16 submitters, each waiting while the queue holds 5,000 (EXECD_QUEUE_CAPACITY is 10,000 by default).
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (left > 0) {
        left--;
        const r = await postJson(`${execd.url}/v1/jobs`, { argv: ['/bin/true'], queue: queue.name });
        if (r.status === 429 || r.status === 503) {
          left++;
          await sleep(50);
        } else if (r.status !== 202) throw new Error(`/v1/jobs: ${r.status} ${r.body}`);
        if (left % 1000 === 0 && ((await queues()).find((q) => q.name === queue.name)?.queued ?? 0) > 5000) await sleep(200);
      }
    }),
  );
  for (;;) {
    const q = (await queues()).find((x) => x.name === queue.name)!;
    if (q.processed >= queue.processed + JOBS) break;
    await sleep(100);
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(`  ${JOBS} jobs finished in ${secs.toFixed(1)} s (${(JOBS / secs).toFixed(0)} jobs/s, queue ${queue.name})`);
  const after = await report(`execd after ${JOBS} jobs`, execd.url, pid);
  console.log(`targets: RSS at rest ${(rest / MiB).toFixed(1)} MiB (≤ 64 MiB), after ${JOBS} jobs ${(after / MiB).toFixed(1)} MiB (≤ 80 MiB after 60,000)`);
} finally {
  await execd.stop();
}
