/**
 * Spawn benchmark (issue 8), side by side in one run, figures printed not asserted:
 *  1. POST /v1/run {"argv":["/bin/true"]} at 1 and 8 connections, execd with each spawner,
 *     against adnanh/webhook running /bin/true (target: native ≥ 1.1× webhook at 8);
 *  2. the same with execd holding 1 GiB (EXECD_TEST_BALLAST_BYTES, a test-only setting)
 *     (target: ≥ 90 % of its rate at rest);
 *  3. raw spawn loops of /bin/true from a Node process at rest and holding 1 GiB:
 *     child_process.spawn against the native spawner (helper clone + exec).
 * Each figure is the median of `rounds` closed-loop runs of `seconds`; all servers run
 * throughout and the rounds interleave them, so that drift on a shared machine hits them alike.
 *
 *   npx tsx bench/spawn.ts [seconds=3] [rounds=5]
 * webhook comes from the Debian package `webhook`; when it is missing and this runs as
 * root with apt-get, it is installed (apt-get update && apt-get install -y webhook).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedLoop, postJson, rawSpawnTrue, startExecdReady, TOKEN, type LoopResult, freePort } from './lib.js';

const GiB = 1 << 30;
const CONNS = [1, 8] as const;

// ---------- raw mode: a child process that measures spawn loops while holding `ballast` bytes ----------

if (process.argv[2] === '--raw') {
  const ballastBytes = Number(process.argv[3]);
  const seconds = Number(process.argv[4]);
  const { nativeSpawner } = await import('../src/runner/native.js');
  const { helper, nativeUnavailableReason } = await import('../src/runner/native-helper.js');
  const native = nativeUnavailableReason() === null;
  if (native) helper(); // started while this process is small, as execd does
  const ballast = ballastBytes > 0 ? Buffer.alloc(ballastBytes, 1) : null;
  const nativeTrue = async () => {
    const c = await nativeSpawner.spawn({ file: '/bin/true', argv: ['/bin/true'], cwd: '/', env: {}, stdin: 'ignore' });
    await Promise.all([c.exited, c.readOutput(() => {}).closed]);
  };
  const out: Record<string, LoopResult | null> = {};
  for (const c of CONNS) {
    await closedLoop(c, 300, rawSpawnTrue);
    out[`child_process@${c}`] = await closedLoop(c, seconds * 1000, rawSpawnTrue);
    if (native) {
      await closedLoop(c, 300, nativeTrue);
      out[`native@${c}`] = await closedLoop(c, seconds * 1000, nativeTrue);
    } else out[`native@${c}`] = null;
  }
  process.stdout.write(JSON.stringify({ rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20), results: out }));
  void ballast;
  process.exit(0);
}

// ---------- main ----------

const seconds = Number(process.argv[2] ?? 3);
const rounds = Number(process.argv[3] ?? 5);
const body = { argv: ['/bin/true'] };

/** webhook on PATH, installing the Debian package if we may; null when it cannot be had. */
function ensureWebhook(): string | null {
  const which = () => spawnSync('sh', ['-c', 'command -v webhook'], { encoding: 'utf8' }).stdout.trim() || null;
  const found = which();
  if (found) return found;
  if (process.getuid?.() !== 0 || spawnSync('sh', ['-c', 'command -v apt-get']).status !== 0) {
    console.log('webhook is not installed and cannot be installed here (needs root and apt-get): skipping it');
    return null;
  }
  console.log('installing webhook: apt-get update && apt-get install -y webhook');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  spawnSync('apt-get', ['update'], { stdio: 'ignore', env });
  const r = spawnSync('apt-get', ['install', '-y', '--no-install-recommends', 'webhook'], { stdio: 'ignore', env });
  if (r.status !== 0) {
    console.log('apt-get install webhook failed: skipping it');
    return null;
  }
  return which();
}

interface Target {
  name: string;
  url: string;
  stop(): Promise<void>;
}

async function startWebhook(bin: string, dir: string): Promise<Target> {
  const hooks = join(dir, 'hooks.json');
  // include-command-output-in-response: answer after the command ends, as POST /v1/run does.
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
    url,
    async stop() {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    },
  };
}

async function startExecdTarget(name: string, env: Record<string, string>): Promise<Target> {
  // Logging at info (one audit line per run) to /dev/null, as webhook logs its lines at its default level there.
  const execd = await startExecdReady({ EXECD_LOG_LEVEL: 'info', EXECD_MAX_SYNC_RUNS: '64', ...env });
  const check = await postJson(`${execd.url}/v1/run`, body);
  if (check.status !== 200) throw new Error(`${name} answered ${check.status}: ${check.body}`);
  const info = JSON.parse((await getJson(`${execd.url}/v1/info`)).body) as { spawner: string };
  return { name: `${name} [${info.spawner}]`, url: `${execd.url}/v1/run`, stop: () => execd.stop() };
}

function getJson(url: string) {
  return fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } }).then(async (r) => ({ status: r.status, body: await r.text() }));
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : NaN;
};

const http = new Map<string, Map<number, LoopResult[]>>();
const record = (table: Map<string, Map<number, LoopResult[]>>, name: string, c: number, r: LoopResult) => {
  if (!table.has(name)) table.set(name, new Map());
  const row = table.get(name)!;
  if (!row.has(c)) row.set(c, []);
  row.get(c)!.push(r);
};
type Table = Map<string, Map<number, LoopResult[]>>;
const rate = (table: Table, name: string, c: number) => median((table.get(name)?.get(c) ?? []).map((r) => r.rate));
const p50 = (table: Table, name: string, c: number) => median((table.get(name)?.get(c) ?? []).map((r) => r.p50));

const dir = mkdtempSync(join(tmpdir(), 'execd-bench-spawn-'));
const webhookBin = ensureWebhook();
console.log(`bench/spawn.ts: ${seconds}s per measurement, median of ${rounds} rounds, ${new Date().toISOString()}`);

const targets: Array<{ key: string; start: () => Promise<Target> }> = [
  ...(webhookBin ? [{ key: 'webhook', start: () => startWebhook(webhookBin, dir) }] : []),
  { key: 'execd native', start: () => startExecdTarget('execd', { EXECD_SPAWNER: 'native' }) },
  { key: 'execd native 1 GiB', start: () => startExecdTarget('execd 1 GiB', { EXECD_SPAWNER: 'native', EXECD_TEST_BALLAST_BYTES: String(GiB) }) },
  { key: 'execd child_process', start: () => startExecdTarget('execd', { EXECD_SPAWNER: 'child_process' }) },
  { key: 'execd child_process 1 GiB', start: () => startExecdTarget('execd 1 GiB', { EXECD_SPAWNER: 'child_process', EXECD_TEST_BALLAST_BYTES: String(GiB) }) },
];
const labels = new Map<string, string>();
const raw = new Map<string, Map<number, LoopResult[]>>();
const rawRss = new Map<number, number>();

// Every server runs for the whole benchmark (idle ones cost nothing) and the measurements
// alternate between them, round after round: drift on a shared machine hits them alike.
const running: Target[] = [];
try {
  for (const t of targets) {
    const target = await t.start();
    running.push(target);
    labels.set(t.key, target.name);
  }
  for (let round = 1; round <= rounds; round++) {
    process.stdout.write(`round ${round}/${rounds}:`);
    for (const [i, t] of targets.entries()) {
      const target = running[i]!;
      for (const c of CONNS) {
        const op = async () => {
          const r = await postJson(target.url, t.key === 'webhook' ? {} : body);
          if (r.status !== 200) throw new Error(`${target.name}: status ${r.status} ${r.body}`);
        };
        await closedLoop(c, 300, op); // warm-up
        record(http, t.key, c, await closedLoop(c, seconds * 1000, op));
      }
      process.stdout.write(` ${t.key} ✓`);
    }
    for (const ballast of [0, GiB]) {
      const r = spawnSync(process.execPath, ['--import', 'tsx', new URL(import.meta.url).pathname, '--raw', String(ballast), String(seconds)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 1 << 20,
      });
      const parsed = JSON.parse(r.stdout) as { rssMiB: number; results: Record<string, LoopResult | null> };
      for (const [k, v] of Object.entries(parsed.results)) {
        const [who, c] = k.split('@');
        if (v) record(raw, `${who} ${ballast ? 'from 1 GiB' : 'at rest'}`, Number(c), v);
      }
      rawRss.set(ballast, parsed.rssMiB);
      process.stdout.write(` raw ${ballast ? '1 GiB' : 'rest'} ✓`);
    }
    process.stdout.write('\n');
  }
} finally {
  await Promise.all(running.map((t) => t.stop()));
}
rmSync(dir, { recursive: true, force: true });

const row = (name: string, table: Map<string, Map<number, LoopResult[]>>, key: string) =>
  `  ${name.padEnd(44)}` + CONNS.map((c) => `${rate(table, key, c).toFixed(0).padStart(7)}/s (p50 ${p50(table, key, c).toFixed(1).padStart(5)} ms)`).join('  ');

console.log(`\nPOST /v1/run {"argv":["/bin/true"]} (webhook: POST /hooks/true)${' '.repeat(3)}1 connection${' '.repeat(14)}8 connections`);
for (const t of targets) console.log(row(labels.get(t.key) ?? t.key, http, t.key));
console.log(`\nraw spawn loop of /bin/true from a Node process (RSS ${[...rawRss.values()].map((m) => `${m} MiB`).join(' / ')})`);
for (const key of raw.keys()) console.log(row(key, raw, key));

const ratio = (a: number, b: number) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
console.log('\ntargets');
if (webhookBin) {
  const r = ratio(rate(http, 'execd native', 8), rate(http, 'webhook', 8));
  console.log(`  execd native / webhook at 8 connections:        ${r.toFixed(2)}× (target ≥ 1.1×)`);
  const r1 = ratio(rate(http, 'execd native', 1), rate(http, 'webhook', 1));
  console.log(`  execd native / webhook at 1 connection:         ${r1.toFixed(2)}×`);
}
for (const c of CONNS) {
  const n = ratio(rate(http, 'execd native 1 GiB', c), rate(http, 'execd native', c));
  const cp = ratio(rate(http, 'execd child_process 1 GiB', c), rate(http, 'execd child_process', c));
  console.log(`  holding 1 GiB vs at rest, ${c} conn: native ${(n * 100).toFixed(0)} % (target ≥ 90 %), child_process ${(cp * 100).toFixed(0)} %`);
}
for (const c of CONNS) {
  const n = ratio(rate(raw, 'native from 1 GiB', c), rate(raw, 'native at rest', c));
  const cp = ratio(rate(raw, 'child_process from 1 GiB', c), rate(raw, 'child_process at rest', c));
  console.log(`  raw, 1 GiB vs at rest, ${c} in flight: native ${(n * 100).toFixed(0)} %, child_process ${(cp * 100).toFixed(0)} %`);
}
