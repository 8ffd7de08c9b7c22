/**
 * The BullMQ peer of issue 8's jobs target: a minimal BullMQ worker spawning
 * /bin/true for each job, in a child Node process of its own (so neither heap
 * weighs on the other's fork), against the Redis at `redisUrl`.
 *
 * The child adds `jobs` jobs with Queue.addBulk (batches of 1,000) to a queue
 * under a fresh key prefix, while a Worker of `concurrency` runs them: each
 * job spawns /bin/true with child_process.spawn and resolves on its exit. The
 * time runs from the first add to the last completion. Completed jobs are
 * kept up to 1,000, as execd's EXECD_RETAIN_JOBS in the bench. Afterwards
 * every key under the prefix is removed (obliterate, then a SCAN + DEL of
 * what might be left) and the child exits.
 *
 *   import { bullmqPeer } from './bullmq-peer.js';
 *   const { jobsPerSec, ms } = await bullmqPeer({ jobs: 20_000, concurrency: 8 });
 */
import { spawn } from 'node:child_process';

export interface BullmqPeerOptions {
  jobs: number;
  concurrency: number;
  /** Default redis://127.0.0.1:6379. */
  redisUrl?: string;
  /** Jobs run (untimed, same queue and worker) before the measured ones, so the child's JIT is warm. Default 0. */
  warmup?: number;
}

const ROOT = new URL('..', import.meta.url).pathname;

/** Plain ESM run with `node --input-type=module -e` from the project root (bullmq resolves from node_modules). */
const CHILD = `
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import IORedis from 'ioredis';

const { jobs, concurrency, redisUrl, warmup } = JSON.parse(process.env.BULLMQ_PEER);
const prefix = 'bench-bullmq-' + process.pid + '-' + randomBytes(6).toString('hex');
const name = 'true';
const connection = () => new IORedis(redisUrl, { maxRetriesPerRequest: null, lazyConnect: false });

const queueConn = connection();
const workerConn = connection();
const queue = new Queue(name, { connection: queueConn, prefix });
let completed = 0;
let target = 0;
let reached = () => {};
const worker = new Worker(
  name,
  () =>
    new Promise((resolve, reject) => {
      const child = spawn('/bin/true', [], { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', (code) => resolve(code));
    }),
  { connection: workerConn, prefix, concurrency },
);
worker.on('completed', () => {
  if (++completed === target) reached();
});
worker.on('failed', (job, err) => {
  process.stderr.write('bullmq peer: job failed: ' + (err && err.message) + '\\n');
  if (++completed === target) reached();
});
await worker.waitUntilReady();
await queue.waitUntilReady();

const opts = { removeOnComplete: { count: 1000 }, removeOnFail: { count: 1000 } };
async function batch(n) {
  target += n;
  const done = new Promise((resolve) => (reached = resolve));
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1000) {
    const k = Math.min(1000, n - i);
    await queue.addBulk(Array.from({ length: k }, () => ({ name, data: {}, opts })));
  }
  await done;
  return performance.now() - t0;
}

let ms = 0;
try {
  if (warmup > 0) await batch(warmup);
  ms = await batch(jobs);
} finally {
  await worker.close();
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  // obliterate removes the queue's keys; anything else under the prefix (none expected) goes too.
  let cursor = '0';
  do {
    const [next, keys] = await queueConn.scan(cursor, 'MATCH', prefix + ':*', 'COUNT', 1000);
    if (keys.length > 0) await queueConn.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  await Promise.all([queueConn.quit(), workerConn.quit()]);
}
process.stdout.write(JSON.stringify({ ms, jobsPerSec: jobs / (ms / 1000), prefix }));
process.exit(0);
`;

/** Run the BullMQ peer in a child Node process; resolves with its rate over the measured jobs. */
export async function bullmqPeer(opts: BullmqPeerOptions): Promise<{ jobsPerSec: number; ms: number }> {
  const params = { jobs: opts.jobs, concurrency: opts.concurrency, redisUrl: opts.redisUrl ?? 'redis://127.0.0.1:6379', warmup: opts.warmup ?? 0 };
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    cwd: ROOT,
    env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/', BULLMQ_PEER: JSON.stringify(params) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`bullmq peer exited with ${code}`);
  const { ms, jobsPerSec } = JSON.parse(out) as { ms: number; jobsPerSec: number };
  return { jobsPerSec, ms };
}
