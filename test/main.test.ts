import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('..', import.meta.url).pathname;

/** Start execd from source (node --import tsx src/main.ts; `npm start` runs the same compiled) in a child with only the given environment. */
function startServer(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], { cwd: ROOT, env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  child.stderr.setEncoding('utf8').on('data', (d: string) => stderr.push(d));
  return { child, stderr };
}

describe('main: starting execd', () => {
  it('logs the URL first, prints a generated token once, serves it, and stops on SIGTERM', async () => {
    const { child, stderr } = startServer({ EXECD_PORT: '0', EXECD_TOKEN: '' });
    const lines = createInterface({ input: child.stdout });
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
