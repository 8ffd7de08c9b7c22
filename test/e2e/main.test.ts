import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/proc.js';
import { liveMembers, procState, startServer as startTestServer, stopServer, tempInstanceDir, type ServerProcess } from '../helpers/server.js';

const ROOT = new URL('../..', import.meta.url).pathname;
/** Alive: not gone, and not a zombie (dead, only not yet reaped by whoever inherited it). */
const alive = (pid: number) => ![null, 'Z'].includes(procState(pid));

/**
 * Start execd from source (node --import tsx src/main.ts; `npm start` runs the same compiled) in a child with only
 * the given environment.
 */
function startServer(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', ...env }, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }); // ipc: it dies with this test (helpers/server.ts)
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  return { child, stderr };
}

describe('main: starting execd', () => {
  it('logs the URL first, prints a generated token once, serves it, and stops on SIGTERM', async () => {
    const { child, stderr } = startServer({ EXECD_PORT: '0', EXECD_TOKEN: '' });
    const lines = createInterface({ input: child.stdout! });
    const [first] = (await once(lines, 'line')) as [string];
    const entry = JSON.parse(first);
    expect(entry.msg).toMatch(/^execd listening on http:\/\/127\.0\.0\.1:\d+$/);
    const url: string = entry.msg.replace('execd listening on ', '');
    await new Promise((r) => setTimeout(r, 100));
    const tokenLine = stderr.join('').split('\n').find((l) => l.includes('generated token'));
    expect(tokenLine).toBeTruthy();
    const token = tokenLine!.split(': ').pop()!.trim();
    const res = await fetch(`${url}/v1/info`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { pid: number }).pid).toBe(child.pid);
    expect((await fetch(`${url}/v1/info`)).status).toBe(401);
    const logged: string[] = [];
    lines.on('line', (l) => logged.push(l));
    child.kill('SIGTERM');
    const [code] = await once(child, 'exit');
    expect(code).toBe(0);
    expect(logged.join('\n')).not.toContain(token);
    expect(stderr.join('').split(token).length - 1).toBe(1);
  });

  it('refuses a non-loopback host without a token with one clear line', async () => {
    const { child, stderr } = startServer({ EXECD_HOST: '0.0.0.0', EXECD_PORT: '0' });
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    const text = stderr.join('');
    expect(text.trim().split('\n')).toHaveLength(1);
    expect(text).toMatch(/non-loopback EXECD_HOST=0\.0\.0\.0.*EXECD_TOKEN/);
  });

  it('refuses a wrong setting naming it', async () => {
    const { child, stderr } = startServer({ EXECD_PORT: 'eighty' });
    const [code] = await once(child, 'exit');
    expect(code).toBe(2);
    expect(stderr.join('')).toMatch(/^execd: invalid setting EXECD_PORT/);
  });
});

describe('main: started by a test', () => {
  it('exits by itself, its job stopped, when the process that started it is SIGKILLed (and a test redis-server dies too)', async () => {
    const instanceDir = mkdtempSync(join(tmpdir(), 'execd-orphan-'));
    const starter = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/start-servers.ts', instanceDir], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let pids: { server: number; job: number; redis: number | null } | undefined;
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: starter.stdout! }).once('line', resolve);
        starter.once('exit', (code) => reject(new Error(`start-servers.ts exited (${code}) before it started them`)));
      });
      pids = JSON.parse(line) as { server: number; job: number; redis: number | null };
      expect(pids.job).toBeGreaterThan(0);
      expect([pids.server, pids.job].map(alive)).toEqual([true, true]);
      starter.kill('SIGKILL');
      const { server, job, redis } = pids;
      const gone = await waitFor(() => !alive(server) && liveMembers(job).length === 0 && (redis === null || !alive(redis)), 15_000, 50);
      expect(gone, JSON.stringify({ server: procState(server), job: liveMembers(job), redis: redis && procState(redis) })).toBe(true);
    } finally {
      starter.kill('SIGKILL');
      if (pids) for (const pid of [pids.server, pids.redis]) if (pid !== null && alive(pid)) process.kill(pid, 'SIGKILL');
      if (pids && liveMembers(pids.job).length > 0) process.kill(-pids.job, 'SIGKILL');
      rmSync(instanceDir, { recursive: true, force: true });
    }
  });
});

describe('main: without the native spawner', () => {
  it('says so at start at warn level (what it costs, how to get it) and spawns with child_process', async () => {
    // A copy of src/ with no native/build beside it: as after an npm ci without python3, make and g++.
    const copy = mkdtempSync(join(tmpdir(), 'execd-no-native-'));
    cpSync(join(ROOT, 'src'), join(copy, 'src'), { recursive: true });
    cpSync(join(ROOT, 'package.json'), join(copy, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    let server: ServerProcess | undefined;
    try {
      server = await startTestServer({ EXECD_SPAWNER: 'auto', EXECD_INSTANCE_DIR: tempInstanceDir() }, [process.execPath, '--import', 'tsx', join(copy, 'src/main.ts')]);
      const warning = await server.waitForLog((l) => l.level === 40 && /native spawner/.test(l.msg));
      expect(warning.msg).toMatch(/child_process.*python3, make and g\+\+/);
      expect(warning.spawner).toMatch(/^child_process \(native spawner unavailable: /);
      const info = (await (await server.api('/v1/info')).json()) as { spawner: string };
      expect(info.spawner).toBe(warning.spawner);
    } finally {
      stopServer(server);
      await server?.exited;
      rmSync(copy, { recursive: true, force: true });
    }
  });
});

