/**
 * Redis backend benchmark (issue 7), figures printed, not asserted: end-to-end
 * jobs/s of /bin/true, N jobs submitted over HTTP (16 in flight) to one node
 * until every one has finished, in the same run for
 *   - the in-memory backend: one `all` node, default:C;
 *   - the Redis backend: one api node + one worker node (default:C);
 *   - the Redis backend: one api node + two worker nodes (default:C each);
 *   - the Redis backend: one `all` node (default:C), no api/worker split;
 *   - a minimal BullMQ worker spawning /bin/true at concurrency C (bench/bullmq-peer.ts),
 *     its jobs added with addBulk in its own process (no HTTP).
 * Every execd node is its own process (EXECD_LOG_LEVEL=warn, EXECD_RETAIN_JOBS=1000); all
 * setups are started first (each Redis one under a fresh key prefix, deleted afterwards) and
 * stay idle between their turns; the N jobs are run in slices that alternate over the setups
 * and the peer, so that a neighbour's load on this machine weighs on every side alike.
 *
 *   npx tsx bench/redis.ts [jobs=5000] [concurrency=8] [slices=5]
 *   BENCH_REDIS_URL=redis://127.0.0.1:6379 (default)
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { bullmqPeer } from './bullmq-peer.js';
import { startExecdReady, TOKEN } from './lib.js';

const [JOBS = 5000, CONCURRENCY = 8, SLICES = 5] = process.argv.slice(2).map(Number);
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const AUTH = { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' };
const WARMUP = 200;
const SPAWNER: Record<string, string> = process.env.EXECD_SPAWNER ? { EXECD_SPAWNER: process.env.EXECD_SPAWNER } : {};

type Node = Awaited<ReturnType<typeof startExecdReady>>;

async function api<T>(url: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(`${url}${path}`, { method: body === undefined ? 'GET' : 'POST', headers: AUTH, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!res.ok) throw new Error(`${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

const TERMINAL = new Set(['succeeded', 'failed', 'timed_out', 'canceled', 'lost']);

/**
 * `n` jobs of /bin/true through `url` until all have finished: ms taken. Finished means the
 * last 16 accepted are terminal (long-poll) and the queue shows none queued or running.
 */
async function runJobs(url: string, n: number): Promise<{ ms: number; failed: number }> {
  let toSubmit = n;
  const ids: string[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (toSubmit-- > 0) ids.push((await api<{ id: string }>(url, '/v1/jobs', { argv: ['/bin/true'] })).id);
    }),
  );
  let failed = 0;
  for (const id of ids.slice(-16)) {
    for (let i = 0; i < 100; i++) {
      const job = await api<{ state: string }>(url, `/v1/jobs/${id}?waitMs=10000`);
      if (TERMINAL.has(job.state)) {
        if (job.state !== 'succeeded') failed++;
        break;
      }
    }
  }
  for (let i = 0; i < 6000; i++) {
    const q = (await api<{ name: string; queued: number; running: number }[]>(url, '/v1/queues')).find((x) => x.name === 'default')!;
    if (q.queued === 0 && q.running === 0) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  return { ms: performance.now() - t0, failed };
}

async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      if (keys.length > 0) await redis.unlink(...keys);
      cursor = next;
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

interface Setup {
  name: string;
  /** Start the nodes; the first one takes the HTTP requests. */
  start(prefix: string): Promise<Node[]>;
}

const common: Record<string, string> = { EXECD_QUEUES: `default:${CONCURRENCY}`, EXECD_QUEUE_CAPACITY: String(JOBS + WARMUP + 1000), EXECD_RETAIN_JOBS: '1000', ...SPAWNER };
const redisEnv = (prefix: string, role: string) => ({ ...common, EXECD_QUEUE_BACKEND: 'redis', EXECD_REDIS_URL: REDIS_URL, EXECD_REDIS_PREFIX: prefix, EXECD_ROLE: role, EXECD_NODE_ID: `${prefix}-${role}-${randomBytes(3).toString('hex')}` });

const SETUPS: Setup[] = [
  { name: 'memory, 1 all node', start: async () => [await startExecdReady(common)] },
  { name: 'redis, api + 1 worker', start: async (p) => Promise.all([startExecdReady(redisEnv(p, 'api')), startExecdReady(redisEnv(p, 'worker'))]) },
  {
    name: 'redis, api + 2 workers',
    start: async (p) => Promise.all([startExecdReady(redisEnv(p, 'api')), startExecdReady(redisEnv(p, 'worker')), startExecdReady(redisEnv(p, 'worker'))]),
  },
  { name: 'redis, 1 all node', start: async (p) => [await startExecdReady(redisEnv(p, 'all'))] },
];

const PEER = 'bullmq peer (addBulk, 1 worker)';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

console.log(
  `bench/redis.ts: node ${process.version}, ${JOBS} jobs of /bin/true per setup in ${SLICES} interleaved slices, concurrency ${CONCURRENCY} per worker node, ` +
    `Redis ${REDIS_URL}, EXECD_SPAWNER=${process.env.EXECD_SPAWNER ?? 'auto'}`,
);
// Every setup runs at once (idle between its slices), each under its own key prefix.
const running: { setup: Setup; prefix: string; nodes: Node[] }[] = [];
try {
  for (const setup of SETUPS) {
    const prefix = `bench-execd-${randomBytes(6).toString('hex')}`;
    running.push({ setup, prefix, nodes: await setup.start(prefix) });
  }
  for (const r of running) await runJobs(r.nodes[0]!.url, WARMUP);
  const slice = Math.ceil(JOBS / SLICES);
  const ms = new Map<string, number[]>([...SETUPS.map((s) => [s.name, []] as [string, number[]]), [PEER, []]]);
  for (let i = 0; i < SLICES; i++) {
    for (const r of running) {
      const { ms: took, failed } = await runJobs(r.nodes[0]!.url, slice);
      if (failed > 0) console.log(`   (${r.setup.name}: ${failed} of the last 16 jobs of slice ${i + 1} did not succeed)`);
      ms.get(r.setup.name)!.push(took);
    }
    ms.get(PEER)!.push((await bullmqPeer({ jobs: slice, concurrency: CONCURRENCY, redisUrl: REDIS_URL, warmup: WARMUP })).ms);
    console.log(`   slice ${i + 1}/${SLICES}: ${[...ms].map(([name, t]) => `${name} ${(slice / (t.at(-1)! / 1000)).toFixed(0)}/s`).join(', ')}`);
  }
  const rate = (name: string) => (slice * SLICES) / (ms.get(name)!.reduce((a, b) => a + b, 0) / 1000);
  /** Median over the slices of this setup's rate over the base's, in the same slice. */
  const ratio = (name: string, base: string) => median(ms.get(name)!.map((t, i) => ms.get(base)![i]! / t));
  const memory = SETUPS[0]!.name;
  const one = SETUPS[1]!.name;
  console.log(`\n${'setup'.padEnd(34)} ${'jobs/s'.padStart(8)} ${'vs memory'.padStart(10)} ${'vs bullmq'.padStart(10)} ${'vs 1 worker'.padStart(12)}`);
  for (const name of ms.keys()) {
    const pct = (base: string) => `${(ratio(name, base) * 100).toFixed(0)} %`;
    console.log(`${name.padEnd(34)} ${rate(name).toFixed(0).padStart(8)} ${pct(memory).padStart(10)} ${pct(PEER).padStart(10)} ${(name.startsWith('redis') ? pct(one) : '').padStart(12)}`);
  }
  console.log('   jobs/s: over all slices; ratios: median of the per-slice ratios (the same slice of time for both sides)');
} finally {
  for (const r of running) {
    await Promise.all(r.nodes.map((n) => n.stop()));
    if (r.setup.name.startsWith('redis')) await deleteKeys(r.prefix);
  }
}
