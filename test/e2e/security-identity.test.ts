import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nativeUnavailableReason } from '../../src/runner/native-helper.js';
import { AUTH, startApp, type TestApp } from '../helpers/app.js';
import { startServer, stopServer, tempDataDir, type ServerProcess } from '../helpers/server.js';

/**
 * Issue 13, items 4 and 6: a run-as child takes its identity before it enters its cwd, and a child
 * running as the server's own user cannot read the server's secrets through /proc.
 */
const isRoot = process.getuid?.() === 0;
const NOBODY = 65534;
const native = nativeUnavailableReason() === null;

describe('identity first: a run-as child enters its cwd with its own rights (issue 13)', () => {
  let root: string;
  let inner: string;
  beforeAll(() => {
    // <root> 0700 root-owned; <root>/in 0755 with data.txt: root may enter it, nobody may not.
    root = mkdtempSync(join(tmpdir(), 'execd-identity-'));
    chmodSync(root, 0o700);
    inner = join(root, 'in');
    mkdirSync(inner, { mode: 0o755 });
    chmodSync(inner, 0o755);
    writeFileSync(join(inner, 'data.txt'), 'root secret\n', { mode: 0o644 });
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  for (const spawner of ['native', 'child_process'] as const) {
    it.skipIf(!isRoot || (spawner === 'native' && !native))(
      `${spawner}: EXECD_RUN_AS=nobody, a cwd under a 0700 root directory is 422 SPAWN_FAILED EACCES, and nothing ran (root only)`,
      async () => {
        t = await startApp({ EXECD_RUN_AS: 'nobody', EXECD_SPAWNER: spawner });
        const marker = join(tmpdir(), `execd-identity-ran-${spawner}-${process.pid}`);
        rmSync(marker, { force: true });
        const res = await t.http.post('/v1/run').set(AUTH).send({ command: `touch ${marker}; cat data.txt`, cwd: inner });
        expect(res.status, JSON.stringify(res.body)).toBe(422);
        expect(res.body).toMatchObject({ code: 'SPAWN_FAILED', errno: 'EACCES' });
        expect(res.body.detail).toMatch(/cwd/);
        expect(JSON.stringify(res.body)).not.toContain('root secret');
        const { existsSync } = await import('node:fs');
        expect(existsSync(marker)).toBe(false);
        // The same directory is fine for a user who may enter it: the server's own, without run-as.
        const ok = await t.http.post('/v1/run').set(AUTH).send({ argv: ['id', '-u'], cwd: '/tmp' });
        expect(ok.status).toBe(200);
        expect(ok.body.stdout).toBe(`${NOBODY}\n`);
        // PWD and OLDPWD as the request had them (child_process enters the cwd through a shell script).
        const env = await t.http.post('/v1/subprocess/run').set(AUTH).send({ args: ['/usr/bin/env'], cwd: '/tmp', env: { A: '1' }, capture_output: true, text: true });
        expect(env.status, JSON.stringify(env.body)).toBe(200);
        expect(env.body.stdout).toMatch(/^A=1$/m);
        expect(env.body.stdout).not.toMatch(/^(OLD)?PWD=/m);
      },
    );
  }
});

describe('secrets out of reach: the server is not dumpable (issue 13)', () => {
  let server: ServerProcess | undefined;
  afterEach(() => {
    stopServer(server);
    server = undefined;
  });

  it('a child running as the server\'s own user cannot read /proc/<server>/environ, nor its helpers\' files', async () => {
    // A same-user child: as root that needs an unprivileged server (root's children could read anything).
    const dataDir = tempDataDir();
    const env: Record<string, string> = { EXECD_DATA_DIR: dataDir, EXECD_TOKEN_SECRET_MARKER: 'x' };
    let command: string[] | undefined;
    if (isRoot) {
      chownSync(dataDir, NOBODY, NOBODY);
      env.HOME = '/tmp';
      command = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, '--import', 'tsx', 'src/main.ts'];
    }
    server = await startServer(env, command);
    const info = (await (await server.api('/v1/info')).json()) as { pid: number; uid: number; spawner: string };
    expect(info.pid).toBe(server.child.pid);
    const run = async (command: string) => (await (await server!.api('/v1/run', { method: 'POST', body: JSON.stringify({ command }) })).json()) as { exitCode: number; stdout: string; stderr: string };
    // The child runs as the server's uid and still cannot read its environment (EXECD_TOKEN is in it).
    const r = await run(`id -u; cat /proc/${info.pid}/environ`);
    expect(r.stdout).toBe(`${info.uid}\n`);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Permission denied/);
    // Not dumpable: its /proc files belong to root, whoever runs it; so do the spawn helpers' (their memory holds requests).
    const owners = await run(`stat -c %u /proc/${info.pid}/environ /proc/${info.pid}/mem; for t in /proc/${info.pid}/task/*/children; do for c in $(cat $t); do [ "$(cat /proc/$c/comm)" = execd-spawn-hel ] && stat -c %u /proc/$c/environ /proc/$c/mem; done; done; true`);
    const uids = owners.stdout.trim().split('\n');
    expect(uids.length).toBeGreaterThanOrEqual(info.spawner === 'native' ? 4 : 2);
    expect(new Set(uids)).toEqual(new Set(['0']));
  });
});
