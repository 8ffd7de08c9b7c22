/**
 * POST /v1/run {"argv":["/bin/true"]} against a raw in-process child_process.spawn
 * loop of /bin/true, at concurrency 1 and 8, same machine, same run.
 * Targets (issue "Foundation"): ≥ 85 % of the raw rate at 8, p50 within 1 ms of raw.
 *   npx tsx bench/run.ts [seconds-per-measurement]
 */
import { closedLoop, fmt, getJson, postJson, rawSpawnTrue, startExecd } from './lib.js';

const seconds = Number(process.argv[2] ?? 5);
const execd = await startExecd({ EXECD_MAX_SYNC_RUNS: '64', ...(process.env.EXECD_SPAWNER ? { EXECD_SPAWNER: process.env.EXECD_SPAWNER } : {}) });
const body = { argv: ['/bin/true'] };
const check = await postJson(`${execd.url}/v1/run`, body);
if (check.status !== 200) throw new Error(`execd answered ${check.status}: ${check.body}`);

const info = JSON.parse((await getJson(`${execd.url}/v1/info`)).body) as { spawner: string };
console.log(`bench/run.ts: ${seconds}s per measurement, spawner of execd: ${info.spawner} (EXECD_SPAWNER=${process.env.EXECD_SPAWNER ?? 'auto'})`);
for (const c of [1, 8]) {
  await closedLoop(c, 500, rawSpawnTrue); // warm-up
  const raw = await closedLoop(c, seconds * 1000, rawSpawnTrue);
  await closedLoop(c, 500, async () => void (await postJson(`${execd.url}/v1/run`, body)));
  const api = await closedLoop(c, seconds * 1000, async () => {
    const r = await postJson(`${execd.url}/v1/run`, body);
    if (r.status !== 200) throw new Error(`status ${r.status}`);
  });
  console.log(`concurrency ${c}`);
  console.log(`  raw spawn   ${fmt(raw)}`);
  console.log(`  POST /run   ${fmt(api)}`);
  console.log(`  ratio ${(api.rate / raw.rate * 100).toFixed(1)} % of raw (target ≥ 85 % at 8); p50 +${(api.p50 - raw.p50).toFixed(2)} ms (target ≤ 1 ms)`);
}
await execd.stop();
