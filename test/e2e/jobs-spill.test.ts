import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TOKEN } from '../helpers/app.js';
import { SERVER_STDIO } from '../helpers/server.js';
import { fixture, pattern } from '../helpers/jobs.js';

/**
 * 200 MB of output under a 4 MiB memory bound: the server (a child process,
 * so that its RSS can be read from /proc) spills to disk and its RSS stays bounded.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SIZE = 200 * 1024 * 1024;
const MEMORY_BOUND = 4 * 1024 * 1024;

let server: ChildProcess;
let url = '';
const dataDir = mkdtempSync(join(tmpdir(), 'execd-spill-'));

const kib = (pid: number, field: 'VmRSS' | 'VmHWM') => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

async function api(path: string, init: RequestInit = {}) {
  const json: Record<string, string> = init.body === undefined ? {} : { 'content-type': 'application/json' };
  return fetch(`${url}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...json } });
}

beforeAll(async () => {
  server = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    stdio: [...SERVER_STDIO],
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      EXECD_PORT: '0',
      EXECD_TOKEN: TOKEN,
      EXECD_QUEUES: 'default:1',
      EXECD_DATA_DIR: dataDir,
      EXECD_OUTPUT_MEMORY_BYTES: String(MEMORY_BOUND),
      EXECD_MAX_OUTPUT_BYTES: String(256 * 1024 * 1024),
      EXECD_LOG_LEVEL: 'info',
    },
  });
  let out = '';
  server.stdout!.setEncoding('utf8');
  server.stderr!.resume();
  await new Promise<void>((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
    server.stdout!.on('data', (chunk: string) => {
      out += chunk;
      const m = /"url":"(http:\/\/[^"]+)"/.exec(out);
      if (m && !url) {
        url = m[1]!;
        resolve();
      }
    });
  });
  server.stdout!.resume();
}, 30_000);

afterAll(async () => {
  if (server.exitCode === null && server.signalCode === null) {
    server.kill('SIGTERM');
    await once(server, 'exit');
  }
  rmSync(dataDir, { recursive: true, force: true });
});

describe('output spill', () => {
  it('200 MB of output spills to disk under a 4 MiB memory bound and the server RSS stays bounded', async () => {
    const pid = server.pid!;
    const before = kib(pid, 'VmRSS');
    const res = await api('/v1/jobs', { method: 'POST', body: JSON.stringify({ argv: [fixture('pattern.sh'), String(SIZE)] }) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    let peak = before;
    let job: { state: string; outputBytes: { stdout: number }; result: { truncated: { stdout: boolean } } } | undefined;
    for (;;) {
      peak = Math.max(peak, kib(pid, 'VmRSS'));
      job = (await (await api(`/v1/jobs/${id}?waitMs=100`)).json()) as typeof job;
      if (job!.state !== 'queued' && job!.state !== 'running') break;
    }
    expect(job).toMatchObject({ state: 'succeeded', outputBytes: { stdout: SIZE }, result: { truncated: { stdout: false } } });
    // The server's own directory under the data directory (beside `instances`, the recovery records).
    const filesDir = join(dataDir, readdirSync(dataDir).find((name) => name !== 'instances')!);
    expect(statSync(join(filesDir, 'jobs', `${id}.stdout`)).size).toBe(SIZE);
    const growth = Math.max(peak, kib(pid, 'VmHWM')) - before;
    process.stderr.write(`spill: RSS before ${(before / 2 ** 20).toFixed(1)} MiB, sampled peak +${((peak - before) / 2 ** 20).toFixed(1)}, HWM +${((kib(pid, "VmHWM") - before) / 2 ** 20).toFixed(1)} MiB\n`);
    // Buffering the output would cost 200 MB; bounded, it is the memory bound plus pipe chunks and GC slack: read
    // buffers (up to 1 MiB each, from a busy pipe) wait for V8's next collection, which lets tens of MiB of them
    // pile up first, more on Node 24 (85-120 MiB there, 36-60 MiB on Node 22).
    expect(growth, `RSS grew ${(growth / 2 ** 20).toFixed(1)} MiB`).toBeLessThan(144 * 1024 * 1024);
    // Bounded, not proportional: after a second such job (400 MB in all) the high-water mark is still within the bound.
    const hwm = kib(pid, 'VmHWM');
    const again = await api('/v1/jobs', { method: 'POST', body: JSON.stringify({ argv: [fixture('pattern.sh'), String(SIZE)] }) });
    const second = ((await again.json()) as { id: string }).id;
    while (['queued', 'running'].includes(((await (await api(`/v1/jobs/${second}?waitMs=1000`)).json()) as { state: string }).state));
    const more = kib(pid, 'VmHWM') - hwm;
    process.stderr.write(`spill: a second job raised the RSS high-water mark by ${(more / 2 ** 20).toFixed(1)} MiB\n`);
    const total = kib(pid, 'VmHWM') - before;
    expect(total, `after two jobs the RSS high-water mark is ${(total / 2 ** 20).toFixed(1)} MiB up`).toBeLessThan(144 * 1024 * 1024);
    expect((await api(`/v1/jobs/${second}`, { method: 'DELETE' })).status).toBe(204);

    const want = pattern(4096);
    for (const offset of [0, MEMORY_BOUND - 5, 150_000_017, SIZE - 4096]) {
      const r = await api(`/v1/jobs/${id}/output?offset=${offset}`);
      expect(r.headers.get('x-output-offset')).toBe(String(offset));
      const reader = r.body!.getReader();
      const { value } = await reader.read();
      await reader.cancel();
      const head = Buffer.from(value!).subarray(0, 64);
      const phase = offset % 17;
      expect(head.equals(Buffer.concat([want, want]).subarray(phase, phase + head.length))).toBe(true);
    }
    expect((await api(`/v1/jobs/${id}`, { method: 'DELETE' })).status).toBe(204);
    expect(() => statSync(join(filesDir, 'jobs', `${id}.stdout`))).toThrow();
  });
});
