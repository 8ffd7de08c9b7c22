import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { ExitFrame } from '../../src/schemas/stream.js';
import { SERVER_TOKEN, startServer, stopServer, type ServerProcess } from '../helpers/server.js';

/**
 * Issue 14, item 3: EXECD_DATA_DIR on a full filesystem (a real 1 MiB tmpfs). The job's output stops where
 * the disk did; the job says why (truncatedReason "disk_full"), in its result, its WebSocket exit frame, a
 * metric and a log line. The process is not killed for it: it runs to its end with its own exit status.
 */

const mountPoint = mkdtempSync(join(tmpdir(), 'execd-full-'));
const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', mountPoint], { encoding: 'utf8' });
const skipReason = mounted.status === 0 ? null : `cannot mount a tmpfs (root and CAP_SYS_ADMIN needed): ${(mounted.stderr || mounted.error?.message || '').trim()}`;
if (skipReason) process.stderr.write(`jobs-disk-full: skipped: ${skipReason}\n`);

let server: ServerProcess | undefined;
beforeAll(async () => {
  if (skipReason) return;
  server = await startServer({ EXECD_DATA_DIR: mountPoint, EXECD_INSTANCE_DIR: join(mountPoint, 'instances'), EXECD_OUTPUT_MEMORY_BYTES: '65536' });
});
afterAll(async () => {
  if (server) {
    if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGTERM');
    await server.exited;
  }
  stopServer(server);
  if (!skipReason) spawnSync('umount', [mountPoint]);
  rmSync(mountPoint, { recursive: true, force: true });
});

async function settleOn(s: ServerProcess, id: string): Promise<Job> {
  for (;;) {
    const job = (await (await s.api(`/v1/jobs/${id}?waitMs=5000`)).json()) as Job;
    if (!['queued', 'running'].includes(job.state)) return job;
  }
}

describe.skipIf(skipReason !== null)('a full disk under EXECD_DATA_DIR', () => {
  it('is visible: truncatedReason disk_full in the result, the exit frame, the metric and the log; the process runs on', async () => {
    const s = server!;
    // 3 MiB on a 1 MiB filesystem, then a line on stderr (in memory) and exit 3: the process must get there.
    const script = 'yes 0123456789abcdef | head -c 3145728; echo still-running >&2; exit 3';
    const res = await s.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ argv: ['sh', '-c', script] }) });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as Job;
    const ws = new WebSocket(`${s.url.replace(/^http/, 'ws')}/v1/jobs/${id}/stream?offset=0`, { headers: { authorization: `Bearer ${SERVER_TOKEN}` } });
    const exit = new Promise<unknown>((resolve, reject) => {
      ws.on('message', (data) => {
        const frame = JSON.parse(String(data)) as { type: string };
        if (frame.type === 'exit') resolve(frame);
      });
      ws.on('error', reject);
    });

    const job = await settleOn(s, id);
    expect(job).toMatchObject({
      state: 'failed',
      error: null,
      result: {
        exitCode: 3,
        truncated: { stdout: true, stderr: false },
        truncatedReason: { stdout: 'disk_full', stderr: null },
      },
    });
    process.stderr.write(`disk-full: kept ${job.outputBytes.stdout} of 3145728 bytes of stdout on a 1 MiB tmpfs; exit ${job.result?.exitCode}\n`);
    // What the filesystem held is kept and readable; the rest is dropped.
    expect(job.outputBytes.stdout).toBeGreaterThan(65536);
    expect(job.outputBytes.stdout).toBeLessThan(1024 * 1024);
    const out = Buffer.from(await (await s.api(`/v1/jobs/${id}/output`)).arrayBuffer());
    expect(out.length).toBe(job.outputBytes.stdout);
    expect(out.toString('latin1')).toBe('0123456789abcdef\n'.repeat(Math.ceil(out.length / 17)).slice(0, out.length));
    expect(await (await s.api(`/v1/jobs/${id}/output?stream=stderr`)).text()).toBe('still-running\n');

    expect(ExitFrame.parse(await exit)).toMatchObject({ state: 'failed', exitCode: 3, truncated: { stdout: true }, truncatedReason: { stdout: 'disk_full', stderr: null } });
    ws.close();

    const metrics = await (await s.api('/metrics')).text();
    expect(metrics).toContain('execd_job_output_truncated_total{queue="default",stream="stdout",reason="disk_full"} 1');
    const line = await s.waitForLog((l) => l.jobId === id && l.level === 40);
    expect(line).toMatchObject({ stream: 'stdout', reason: 'disk_full', err: { code: 'ENOSPC' } });
    expect(line.msg).toMatch(/the process runs on/);

    // Deleting the job frees the space: the next job's output is whole again.
    expect((await s.api(`/v1/jobs/${id}`, { method: 'DELETE' })).status).toBe(204);
    const next = await s.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ argv: ['sh', '-c', 'yes | head -c 200000'] }) });
    const again = await settleOn(s, ((await next.json()) as Job).id);
    expect(again).toMatchObject({ state: 'succeeded', outputBytes: { stdout: 200000 }, result: { truncatedReason: { stdout: null, stderr: null } } });
  });

  it('the cap is max_output, not the disk', async () => {
    const s = server!;
    const res = await s.api('/v1/jobs', { method: 'POST', body: JSON.stringify({ argv: ['sh', '-c', 'yes | head -c 100000'], maxOutputBytes: 1000 }) });
    const job = await settleOn(s, ((await res.json()) as Job).id);
    expect(job).toMatchObject({ state: 'succeeded', outputBytes: { stdout: 1000 }, result: { truncated: { stdout: true }, truncatedReason: { stdout: 'max_output', stderr: null } } });
  });
});
