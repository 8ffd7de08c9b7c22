import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import type { Job } from '../../src/schemas/jobs.js';
import { AUTH, startApp, type TestApp } from './app.js';
import { waitFor } from './proc.js';

export const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}`, import.meta.url));

const TERMINAL = new Set(['succeeded', 'failed', 'timed_out', 'canceled', 'lost']);
export const isDone = (job: Job): boolean => TERMINAL.has(job.state);

/** A test app with its own data dir (removed on close). */
export async function startJobsApp(env: Record<string, string> = {}): Promise<TestApp & { dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'execd-jobs-test-'));
  const t = await startApp({ EXECD_DATA_DIR: dataDir, ...env });
  return {
    ...t,
    dataDir,
    close: async () => {
      await t.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function submit(t: TestApp, body: object, headers: Record<string, string> = {}): Promise<Job> {
  const res = await t.http.post('/v1/jobs').set(AUTH).set(headers).send(body);
  expect(res.status, JSON.stringify(res.body)).toBe(202);
  return res.body as Job;
}

export async function getJob(t: TestApp, id: string, waitMs = 0): Promise<Job> {
  const res = await t.http.get(`/v1/jobs/${id}${waitMs ? `?waitMs=${waitMs}` : ''}`).set(AUTH);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body as Job;
}

/** Long-poll until the job is terminal. */
export async function settle(t: TestApp, id: string, timeoutMs = 20_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = await getJob(t, id, Math.min(10_000, Math.max(1, deadline - Date.now())));
    if (isDone(job) || Date.now() >= deadline) return job;
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  trailers: Record<string, string | undefined>;
}

/**
 * GET with node:http (supertest does not expose trailers). `onChunk` sees each
 * chunk as it arrives; returning false aborts the request after it.
 */
export function rawGet(t: TestApp, path: string, onChunk?: (chunk: Buffer, soFar: Buffer) => boolean | void): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = request(`${t.url}${path}`, { headers: AUTH }, (res) => {
      const chunks: Buffer[] = [];
      let aborted = false;
      const finish = () =>
        resolve({
          status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks), trailers: res.trailers as Record<string, string>,
        });
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        if (onChunk?.(chunk, Buffer.concat(chunks)) === false) {
          aborted = true;
          req.destroy();
          finish();
        }
      });
      res.on('end', () => !aborted && finish());
      res.on('error', (err) => !aborted && reject(err));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The bytes pattern.sh prints: "0123456789abcdef\n" repeated, cut at `n`. */
export function pattern(n: number): Buffer {
  const line = Buffer.from('0123456789abcdef\n');
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += line.length) line.copy(out, i, 0, Math.min(line.length, n - i));
  return out;
}

/** Wait until the job runs a process (state running, pid known). */
export async function waitRunning(t: TestApp, id: string, timeoutMs = 10_000): Promise<Job> {
  let job: Job | undefined;
  const ok = await waitFor(async () => {
    job = await getJob(t, id);
    return (job.state === 'running' && job.pid !== null) || isDone(job);
  }, timeoutMs);
  if (!ok || job!.state !== 'running') throw new Error(`job ${id} did not start: ${JSON.stringify(job)}`);
  return job!;
}
